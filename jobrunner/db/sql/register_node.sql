-- $1 name, $2 host, $3 pid, $4 queues (json), $5 lease seconds
-- A conflict is a new process under a fixed --node name: it takes the row over.
INSERT INTO jobrunner_nodes (name, host, pid, queues, expires_at)
VALUES ($1, $2, $3, $4::jsonb, now() + make_interval(secs => $5))
ON CONFLICT (name) DO UPDATE
SET host = excluded.host, pid = excluded.pid, queues = excluded.queues,
    started_at = CASE WHEN jobrunner_nodes.pid = excluded.pid AND jobrunner_nodes.host = excluded.host
                      THEN jobrunner_nodes.started_at ELSE now() END,
    heartbeat_at = now(), expires_at = excluded.expires_at
