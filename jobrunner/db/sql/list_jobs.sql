-- $1 states text[] (null: any), $2 queue (null: any), $3 worker (null: any), $4 limit.
-- Newest first.
SELECT id, state::text AS state, queue, worker, args::text AS args, meta::text AS meta, tags, errors::text AS errors, attempt, max_attempts, priority, inserted_at, least(scheduled_at, '9999-12-31 23:59:59.999999+00') AS scheduled_at, attempted_at, completed_at, discarded_at, cancelled_at, attempted_by, unique_key
FROM jobrunner_jobs
WHERE ($1::text[] IS NULL OR state::text = ANY($1::text[]))
  AND ($2::text IS NULL OR queue = $2)
  AND ($3::text IS NULL OR worker = $3)
ORDER BY id DESC
LIMIT $4
