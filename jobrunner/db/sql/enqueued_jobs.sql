-- $1 states text[], $2 worker (null: any), $3 queue (null: any), $4 limit (null: all).
-- Jobs for the testing assertions, oldest first; args, meta and the rest are matched in Python.
SELECT id, state::text AS state, queue, worker, args::text AS args, meta::text AS meta, tags, errors::text AS errors, attempt, max_attempts, priority, inserted_at, scheduled_at, attempted_at, completed_at, discarded_at, cancelled_at, attempted_by, unique_key, workflow_id, step
FROM jobrunner_jobs
WHERE state::text = ANY($1::text[])
  AND ($2::text IS NULL OR worker = $2::text)
  AND ($3::text IS NULL OR queue = $3::text)
ORDER BY id
LIMIT $4
