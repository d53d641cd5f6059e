-- $1 states text[], $2 queue, $3 worker, $4 tag, $5 args substring, $6 args jsonb
-- (containment), $7 inserted at or after, $8 inserted before: each null for any.
-- $9 ids bigint[] (null: every matching job). Matching jobs that have not finished are
-- cancelled; the node running an executing one is told to stop it.
WITH target AS (
    SELECT id, state AS was
    FROM jobrunner_jobs
    WHERE ($1::text[] IS NULL OR state::text = ANY($1::text[]))
  AND ($2::text IS NULL OR queue = $2)
  AND ($3::text IS NULL OR worker = $3)
  AND ($4::text IS NULL OR $4 = ANY(tags))
  AND ($5::text IS NULL OR strpos(args::text, $5) > 0)
  AND ($6::jsonb IS NULL OR args @> $6::jsonb)
  AND ($7::timestamptz IS NULL OR inserted_at >= $7)
  AND ($8::timestamptz IS NULL OR inserted_at < $8)
      AND ($9::bigint[] IS NULL OR id = ANY($9::bigint[]))
      AND state NOT IN ('completed', 'discarded', 'cancelled')
    FOR UPDATE
),
cancelled AS (
    UPDATE jobrunner_jobs AS j
    SET state = 'cancelled', cancelled_at = now()
    FROM target AS t
    WHERE j.id = t.id
    RETURNING j.id, j.attempted_by, t.was
),
told AS (
    SELECT count(pg_notify('jobrunner_cancel', c.attempted_by[1] || ' ' || c.id)) AS n
    FROM cancelled AS c
    WHERE c.was = 'executing'
)
SELECT cancelled.id FROM cancelled, told ORDER BY cancelled.id
