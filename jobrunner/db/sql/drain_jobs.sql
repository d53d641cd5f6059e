-- $1 queues text[] (null: every queue), $2 demand (how many), $3 node name,
-- $4 all_scheduled (true: scheduled and retryable jobs qualify whatever their time),
-- $5 until (null: now; scheduled/retryable jobs due by then qualify), $6 max id (null: no
-- limit; newer jobs are left, but for a batch's callbacks: inserted when the batch's last
-- job finished, they run in the drain that finished it, as a daemon would run them),
-- $7 skip bigint[] (ids to leave).
-- Claims jobs for running them in this process (drain), best first, skipping locked ones
-- and the jobs that wait on others (deps_left > 0: see migration 0007).
WITH picked AS (
    SELECT id
    FROM jobrunner_jobs
    WHERE ($1::text[] IS NULL OR queue = ANY($1::text[]))
      AND (state = 'available'
           OR (state IN ('scheduled', 'retryable')
               AND ($4::boolean OR scheduled_at <= coalesce($5::timestamptz, now()))
               AND coalesce(deps_left, 0) = 0))
      AND ($6::bigint IS NULL OR id <= $6::bigint OR meta ? 'batch_callback')
      AND NOT (id = ANY($7::bigint[]))
    ORDER BY priority, scheduled_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE jobrunner_jobs AS j
SET state = 'executing',
    attempt = least(j.attempt + 1, 32767),  -- smallint: a failure there discards
    attempted_at = now(),
    attempted_by = ARRAY[$3::text],
    ahead = false  -- a job cancelled while claimed ahead, then retried, still has the flag
FROM picked
WHERE j.id = picked.id
RETURNING j.id, 'executing' AS state, j.queue, j.worker, j.args::text AS args, j.meta::text AS meta,
          j.tags, j.errors::text AS errors, j.attempt, j.max_attempts, j.priority, j.inserted_at,
          least(j.scheduled_at, '9999-12-31 23:59:59.999999+00') AS scheduled_at,
          j.attempted_at, j.completed_at, j.discarded_at, j.cancelled_at,
          j.attempted_by, j.unique_key
