-- $1 ids bigint[], $2 node name. Claims these jobs if they are waiting (any time), for
-- running them in-process (testing inline mode, drain); skips jobs another node holds, and
-- jobs that wait on others (deps_left > 0: see migration 0007).
WITH picked AS (
    SELECT id
    FROM jobrunner_jobs
    WHERE id = ANY($1::bigint[]) AND state IN ('available', 'scheduled', 'retryable')
      AND NOT (state = 'scheduled' AND coalesce(deps_left, 0) > 0)
    ORDER BY priority, scheduled_at, id
    FOR UPDATE SKIP LOCKED
)
UPDATE jobrunner_jobs AS j
SET state = 'executing',
    attempt = least(j.attempt + 1, 32767),  -- smallint: a failure there discards
    attempted_at = now(),
    attempted_by = ARRAY[$2::text],
    ahead = false
FROM picked
WHERE j.id = picked.id
RETURNING j.id, 'executing' AS state, j.queue, j.worker, j.args::text AS args, j.meta::text AS meta,
          j.tags, j.errors::text AS errors, j.attempt, j.max_attempts, j.priority, j.inserted_at,
          least(j.scheduled_at, '9999-12-31 23:59:59.999999+00') AS scheduled_at,
          j.attempted_at, j.completed_at, j.discarded_at, j.cancelled_at,
          j.attempted_by, j.unique_key
