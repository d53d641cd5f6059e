-- $1 workflow id. Cancels every unfinished step: executing ones are told to stop on their
-- node (as cancel_job.sql does). Returns the ids cancelled.
WITH locked AS (
    SELECT id, state AS was
    FROM jobrunner_jobs
    WHERE workflow_id = $1 AND state NOT IN ('completed', 'discarded', 'cancelled')
    ORDER BY id
    FOR UPDATE
),
cancelled AS (
    UPDATE jobrunner_jobs AS j
    SET state = 'cancelled', cancelled_at = now()
    FROM locked
    WHERE j.id = locked.id AND j.state NOT IN ('completed', 'discarded', 'cancelled')
    RETURNING j.id, j.attempted_by, locked.was
),
told AS (
    SELECT count(pg_notify('jobrunner_cancel', c.attempted_by[1] || ' ' || c.id)) AS n
    FROM cancelled AS c
    WHERE c.was = 'executing'
)
SELECT cancelled.id FROM cancelled, told ORDER BY cancelled.id
