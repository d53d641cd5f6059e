-- $1 id. A job that is not executing becomes available now, with one more attempt if it has none left.
-- No row: the job does not exist or is executing.
WITH retried AS (
    UPDATE jobrunner_jobs
    SET state = 'available',
        scheduled_at = now(),
        max_attempts = greatest(max_attempts, least(attempt + 1, 32767)),
        completed_at = NULL, discarded_at = NULL, cancelled_at = NULL
    WHERE id = $1 AND state <> 'executing'
    RETURNING id, state::text AS state, queue, worker, args::text AS args, meta::text AS meta, tags, errors::text AS errors, attempt, max_attempts, priority, inserted_at, scheduled_at, attempted_at, completed_at, discarded_at, cancelled_at, attempted_by, unique_key
),
woken AS (SELECT count(pg_notify('jobrunner_insert', queue)) AS n FROM retried)
SELECT retried.* FROM retried, woken
