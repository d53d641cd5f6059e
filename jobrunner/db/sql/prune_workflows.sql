-- $1 minimum age seconds, $2 batch size. Deletes one bounded batch of workflow rows none of
-- whose steps is left (the pruner deleted them, or they were deleted by hand), inserted more
-- than $1 seconds ago; rows another transaction holds are skipped. Each check is one probe
-- of the workflow step index. Returns how many went.
WITH doomed AS (
    SELECT w.id
    FROM jobrunner_workflows AS w
    WHERE w.inserted_at < now() - make_interval(secs => $1)
      AND NOT EXISTS (SELECT FROM jobrunner_jobs AS j WHERE j.workflow_id = w.id)
    ORDER BY w.id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
),
gone AS (
    DELETE FROM jobrunner_workflows AS w
    USING doomed
    WHERE w.id = doomed.id
    RETURNING w.id
)
SELECT count(*)::int AS n FROM gone
