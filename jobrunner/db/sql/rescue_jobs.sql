-- $1 node lease seconds. Executing jobs whose node's lease expired go back to available (or are
-- discarded when they have no attempts left), with an error entry saying why. A job whose node
-- has no row (run in-process, or the row is already gone) is only orphaned once it has run for
-- longer than a node lease. Live nodes' jobs are never touched, however long they run.
WITH orphaned AS (
    SELECT j.id
    FROM jobrunner_jobs AS j
    LEFT JOIN jobrunner_nodes AS n ON n.name = j.attempted_by[1]
    WHERE j.state = 'executing'
      AND CASE WHEN n.name IS NULL THEN j.attempted_at < now() - make_interval(secs => $1)
               ELSE n.expires_at < now() END
    FOR UPDATE OF j SKIP LOCKED
),
rescued AS (
    UPDATE jobrunner_jobs AS j
    -- a job claimed ahead never started: its attempt is given back, it is never discarded
    SET state = CASE WHEN j.attempt >= j.max_attempts AND NOT j.ahead THEN 'discarded'
                     ELSE 'available' END::jobrunner_job_state,
        scheduled_at = CASE WHEN j.attempt >= j.max_attempts AND NOT j.ahead THEN j.scheduled_at
                            ELSE now() END,
        discarded_at = CASE WHEN j.attempt >= j.max_attempts AND NOT j.ahead THEN now()
                            ELSE j.discarded_at END,
        attempt = j.attempt - j.ahead::int,
        ahead = false,
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempt,
            'at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
            'error', 'orphaned: node ' || coalesce(j.attempted_by[1], 'unknown')
                     || ' stopped heartbeating'
                     || CASE WHEN j.ahead THEN ' (claimed ahead, not started)' ELSE '' END,
            'traceback', NULL))
    FROM orphaned
    WHERE j.id = orphaned.id
    RETURNING j.*
),
woken AS (
    SELECT count(pg_notify('jobrunner_insert', q.queue)) AS n
    FROM (SELECT DISTINCT queue FROM rescued WHERE state = 'available') q
)
SELECT id, state::text AS state, queue, worker, args::text AS args, meta::text AS meta, tags, errors::text AS errors, attempt, max_attempts, priority, inserted_at, scheduled_at, attempted_at, completed_at, discarded_at, cancelled_at, attempted_by, unique_key
FROM rescued, woken
ORDER BY id
