-- $1 workflow id. No row: no such workflow. Else one row per step in id order (a workflow
-- whose steps were all pruned: one row whose id is null), each with the workflow's name and
-- time, the step's deps, and the deps it still waits on (while it waits).
SELECT w.id AS workflow_id, w.name AS workflow_name, w.inserted_at AS workflow_at,
       j.id, j.state::text AS state, j.queue, j.worker, j.args::text AS args,
       j.meta::text AS meta, j.tags, j.errors::text AS errors, j.attempt, j.max_attempts,
       j.priority, j.inserted_at, least(j.scheduled_at, '9999-12-31 23:59:59.999999+00')
       AS scheduled_at, j.attempted_at, j.completed_at, j.discarded_at, j.cancelled_at,
       j.attempted_by, j.unique_key, j.result::text AS result, j.step, j.deps,
       ARRAY(SELECT d.step FROM jobrunner_job_deps AS e
             JOIN jobrunner_jobs AS d ON d.id = e.dep_id
             WHERE e.job_id = j.id AND j.state = 'scheduled' AND j.deps_left > 0
             ORDER BY d.id) AS waiting_on
FROM jobrunner_workflows AS w
LEFT JOIN jobrunner_jobs AS j ON j.workflow_id = w.id
WHERE w.id = $1
ORDER BY j.id
