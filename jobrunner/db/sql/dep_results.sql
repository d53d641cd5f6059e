-- $1 job id of a workflow step. One row per dep of the step that still exists: its name and
-- the result it recorded (json text, null: none).
SELECT d.step, d.result::text AS result
FROM jobrunner_jobs AS j
JOIN jobrunner_jobs AS d ON d.workflow_id = j.workflow_id AND d.step = ANY (j.deps)
WHERE j.id = $1 AND j.workflow_id IS NOT NULL
ORDER BY d.id
