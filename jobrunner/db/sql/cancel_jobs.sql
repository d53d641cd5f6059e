-- $1-$8 the job filter: states text[], queue, worker, tags text[] (all of them), args jsonb
-- (containment), inserted after, inserted before, args text (a substring of the args' JSON)
-- (each null: any).
-- $9 the last id of the previous batch (0 at first), $10 the batch size. One bounded batch
-- in id order: the jobs scanned are re-checked under their row locks, so a job that changed
-- meanwhile is changed only if it still matches; the caller goes on after last_id until
-- fewer than $10 were scanned.
-- Jobs that have not finished are cancelled; the node running an executing one is told to
-- stop it, as for cancel_job.sql.
WITH scanned AS (
    SELECT j.id, j.state
    FROM jobrunner_jobs j
    WHERE j.id > $9
      AND j.state NOT IN ('completed', 'discarded', 'cancelled')
      AND ($1::text[] IS NULL OR j.state::text = ANY ($1::text[]))
      AND ($2::text IS NULL OR j.queue = $2::text)
      AND ($3::text IS NULL OR j.worker = $3::text)
      AND ($4::text[] IS NULL OR j.tags @> $4::text[])
      AND ($5::jsonb IS NULL OR j.args @> $5::jsonb)
      AND ($6::timestamptz IS NULL OR j.inserted_at > $6::timestamptz)
      AND ($7::timestamptz IS NULL OR j.inserted_at < $7::timestamptz)
      AND ($8::text IS NULL OR strpos(j.args::text, $8::text) > 0)
    ORDER BY j.id
    LIMIT $10
),
changed AS (
    UPDATE jobrunner_jobs AS j
    SET state = 'cancelled', cancelled_at = now()
    FROM scanned s
    WHERE j.id = s.id
      AND j.state NOT IN ('completed', 'discarded', 'cancelled')
      AND ($1::text[] IS NULL OR j.state::text = ANY ($1::text[]))
      AND ($2::text IS NULL OR j.queue = $2::text)
      AND ($3::text IS NULL OR j.worker = $3::text)
      AND ($4::text[] IS NULL OR j.tags @> $4::text[])
      AND ($5::jsonb IS NULL OR j.args @> $5::jsonb)
      AND ($6::timestamptz IS NULL OR j.inserted_at > $6::timestamptz)
      AND ($7::timestamptz IS NULL OR j.inserted_at < $7::timestamptz)
      AND ($8::text IS NULL OR strpos(j.args::text, $8::text) > 0)
    RETURNING j.id, j.attempted_by, s.state AS was
),
told AS (
    SELECT count(pg_notify('jobrunner_cancel', c.attempted_by[1] || ' ' || c.id)) AS n
    FROM changed c
    WHERE c.was = 'executing' AND c.attempted_by IS NOT NULL
)
SELECT (SELECT count(*) FROM scanned) AS scanned, (SELECT max(id) FROM scanned) AS last_id,
       ARRAY(SELECT id FROM changed ORDER BY id) AS ids
FROM told
