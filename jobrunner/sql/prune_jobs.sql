-- $1 completed max age seconds, $2 cancelled max age seconds, $3 discarded max age seconds,
-- $4 batch size. Deletes one bounded batch of old finished jobs; rows another transaction holds
-- are skipped, so pruning never waits on (or blocks) the rest of the system for long.
WITH doomed AS (
    SELECT id
    FROM jobrunner_jobs
    WHERE (state = 'completed'
           AND coalesce(completed_at, cancelled_at, discarded_at) < now() - make_interval(secs => $1))
       OR (state = 'cancelled'
           AND coalesce(completed_at, cancelled_at, discarded_at) < now() - make_interval(secs => $2))
       OR (state = 'discarded'
           AND coalesce(completed_at, cancelled_at, discarded_at) < now() - make_interval(secs => $3))
    LIMIT $4
    FOR UPDATE SKIP LOCKED
)
DELETE FROM jobrunner_jobs AS j
USING doomed
WHERE j.id = doomed.id
RETURNING j.state::text AS state
