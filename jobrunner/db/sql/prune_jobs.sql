-- $1 completed max age seconds, $2 cancelled max age seconds, $3 discarded max age seconds,
-- $4 batch size. Deletes one bounded batch of old finished jobs; rows another transaction holds
-- are skipped, so pruning never waits on (or blocks) the rest of the system for long.
-- One index range scan per state, oldest first (the prune index's order): with the three
-- states in one condition the planner scanned the whole table, finished rows and all.
WITH completed AS (
    SELECT id
    FROM jobrunner_jobs
    WHERE state = 'completed'
      AND coalesce(completed_at, cancelled_at, discarded_at) < now() - make_interval(secs => $1)
    ORDER BY coalesce(completed_at, cancelled_at, discarded_at)
    LIMIT $4
    FOR UPDATE SKIP LOCKED
),
cancelled AS (
    SELECT id
    FROM jobrunner_jobs
    WHERE state = 'cancelled'
      AND coalesce(completed_at, cancelled_at, discarded_at) < now() - make_interval(secs => $2)
    ORDER BY coalesce(completed_at, cancelled_at, discarded_at)
    LIMIT $4
    FOR UPDATE SKIP LOCKED
),
discarded AS (
    SELECT id
    FROM jobrunner_jobs
    WHERE state = 'discarded'
      AND coalesce(completed_at, cancelled_at, discarded_at) < now() - make_interval(secs => $3)
    ORDER BY coalesce(completed_at, cancelled_at, discarded_at)
    LIMIT $4
    FOR UPDATE SKIP LOCKED
),
doomed AS (
    SELECT id FROM completed
    UNION ALL SELECT id FROM cancelled
    UNION ALL SELECT id FROM discarded
    LIMIT $4
)
DELETE FROM jobrunner_jobs AS j
USING doomed
WHERE j.id = doomed.id
RETURNING j.state::text AS state
