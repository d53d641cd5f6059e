-- $1 node name. A starting node runs nothing yet, so jobs still executing under its name were
-- left by an earlier process that had the same name and died without stopping (a fixed
-- --node, as a StatefulSet gives). Its lease lives on through the new process, so the rescuer
-- would never see them: they go back to available (or are discarded with no attempts left)
-- as a rescue does. Returns their ids.
WITH orphaned AS (
    SELECT id
    FROM jobrunner_jobs
    WHERE state = 'executing' AND attempted_by[1] = $1
    FOR UPDATE SKIP LOCKED
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
            'error', 'orphaned: node ' || $1 || ' restarted while running it'
                     || CASE WHEN j.ahead THEN ' (claimed ahead, not started)' ELSE '' END,
            'traceback', NULL))
    FROM orphaned
    WHERE j.id = orphaned.id
    RETURNING j.id, j.queue, j.state
),
woken AS (
    SELECT count(pg_notify('jobrunner_insert', q.queue)) AS n
    FROM (SELECT DISTINCT queue FROM rescued WHERE state = 'available') q
)
SELECT rescued.id FROM rescued, woken ORDER BY rescued.id
