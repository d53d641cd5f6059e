-- $1 id
SELECT id, state::text AS state, queue, worker, args::text AS args, meta::text AS meta, tags, errors::text AS errors, attempt, max_attempts, priority, inserted_at, least(scheduled_at, '9999-12-31 23:59:59.999999+00') AS scheduled_at, attempted_at, completed_at, discarded_at, cancelled_at, attempted_by, unique_key, result::text AS result, workflow_id, step
FROM jobrunner_jobs
WHERE id = $1
