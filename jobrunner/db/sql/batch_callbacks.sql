-- $1 batch id. The batch's callback jobs (inserted by jobrunner_batch_progress, migration
-- 0007: their meta holds batch_id and batch_callback) that have not run yet, in id order.
-- For the testing inline mode only: meta is not indexed, so this scans the table.
SELECT id, state::text AS state, queue, worker, args::text AS args, meta::text AS meta, tags,
       errors::text AS errors, attempt, max_attempts, priority, inserted_at,
       least(scheduled_at, '9999-12-31 23:59:59.999999+00') AS scheduled_at, attempted_at,
       completed_at, discarded_at, cancelled_at, attempted_by, unique_key,
       result::text AS result, workflow_id, step
FROM jobrunner_jobs
WHERE meta @> jsonb_build_object('batch_id', $1::bigint)
  AND meta ? 'batch_callback'
  AND state IN ('available', 'scheduled')
ORDER BY id
