-- $1 id. An executing job is cancelled in the database at once and its node is told to stop it.
-- No row: the job does not exist or has already finished.
WITH cancelled AS (
    UPDATE jobrunner_jobs
    SET state = 'cancelled', cancelled_at = now()
    WHERE id = $1 AND state NOT IN ('completed', 'discarded', 'cancelled')
    RETURNING id, state::text AS state, queue, worker, args::text AS args, meta::text AS meta, tags, errors::text AS errors, attempt, max_attempts, priority, inserted_at, scheduled_at, attempted_at, completed_at, discarded_at, cancelled_at, attempted_by, unique_key,
              (SELECT old.state FROM jobrunner_jobs AS old WHERE old.id = $1) AS was
),
told AS (
    SELECT count(pg_notify('jobrunner_cancel', c.attempted_by[1] || ' ' || c.id)) AS n
    FROM cancelled c
    WHERE c.was = 'executing'
)
SELECT cancelled.* FROM cancelled, told
