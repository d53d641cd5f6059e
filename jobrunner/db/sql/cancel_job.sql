-- $1 id. An executing job is cancelled in the database at once and its node is told to stop it.
-- No row: the job does not exist or has already finished.
-- The row is locked first: FOR UPDATE returns its state after any lock it waited on (a claim
-- committing meanwhile makes it executing), and the NOTIFY is decided from that state, not
-- from the statement's snapshot.
WITH locked AS (
    SELECT id, state AS was
    FROM jobrunner_jobs
    WHERE id = $1
    FOR UPDATE
),
cancelled AS (
    UPDATE jobrunner_jobs AS j
    SET state = 'cancelled', cancelled_at = now()
    FROM locked
    WHERE j.id = locked.id AND locked.was NOT IN ('completed', 'discarded', 'cancelled')
    RETURNING j.id, j.state::text AS state, j.queue, j.worker, j.args::text AS args,
              j.meta::text AS meta, j.tags, j.errors::text AS errors, j.attempt,
              j.max_attempts, j.priority, j.inserted_at, j.scheduled_at, j.attempted_at,
              j.completed_at, j.discarded_at, j.cancelled_at, j.attempted_by, j.unique_key,
              locked.was
),
told AS (
    SELECT count(pg_notify('jobrunner_cancel', c.attempted_by[1] || ' ' || c.id)) AS n
    FROM cancelled c
    WHERE c.was = 'executing'
)
SELECT cancelled.* FROM cancelled, told
