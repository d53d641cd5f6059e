-- $1 node name, $2 ids bigint[], $3 attempts int[], $4 states text[],
-- $5 delays float8[] (seconds from now for scheduled_at, null: unchanged),
-- $6 errors text[] (json object appended to errors, null: none),
-- $7 undo bool[] (true: the attempt does not count, as for a snooze or a shutdown)
-- Only jobs this node still owns, at the attempt it ran, change: a rescued job is never acked twice.
-- Jobs put back to available (a shutdown) wake the producers of their queue on every node.
WITH acked AS (
    UPDATE jobrunner_jobs AS j
    SET state = a.state::jobrunner_job_state,
        scheduled_at = CASE WHEN a.delay IS NULL THEN j.scheduled_at
                            ELSE now() + make_interval(secs => a.delay) END,
        completed_at = CASE WHEN a.state = 'completed' THEN now() ELSE j.completed_at END,
        discarded_at = CASE WHEN a.state = 'discarded' THEN now() ELSE j.discarded_at END,
        cancelled_at = CASE WHEN a.state = 'cancelled' THEN now() ELSE j.cancelled_at END,
        errors = CASE WHEN a.error IS NULL THEN j.errors
                      ELSE j.errors || jsonb_build_array(a.error::jsonb) END,
        attempt = j.attempt - a.undo::int
    FROM unnest($2::bigint[], $3::int[], $4::text[], $5::float8[], $6::text[], $7::boolean[])
         AS a(id, attempt, state, delay, error, undo)
    WHERE j.id = a.id
      -- attempt, state and owner in one condition on both sides: as separate conditions
      -- the cached generic plan scans the executing index and compares every pair of rows
      -- (quadratic in the batch: 2,000 acks took 2 s).
      AND j.attempt = CASE WHEN j.state = 'executing' AND j.attempted_by[1] = $1
                           THEN a.attempt END
    RETURNING j.id, j.queue, a.state
),
woken AS (
    SELECT count(pg_notify('jobrunner_insert', q.queue)) AS n
    FROM (SELECT DISTINCT queue FROM acked WHERE state = 'available') q
)
SELECT acked.id FROM acked, woken
