-- $1 command, $2 queue (null: every queue), $3 node (null: every node), $4 payload (json),
-- $5 issued_by (user@host). Daemons are woken at commit; they also poll for commands.
WITH cmd AS (
    INSERT INTO jobrunner_control (command, queue, node, payload, issued_by)
    VALUES ($1, $2, $3, $4::jsonb, $5)
    RETURNING id, created_at
)
SELECT cmd.id, cmd.created_at, count(pg_notify('jobrunner_control', cmd.id::text)) AS notified
FROM cmd
GROUP BY cmd.id, cmd.created_at
