-- $1 ids bigint[], $2 node name. The ids among these that this node still runs: a job that
-- was cancelled or rescued meanwhile is missing, and its task is stopped.
SELECT id
FROM jobrunner_jobs
WHERE id = ANY($1::bigint[]) AND state = 'executing' AND attempted_by[1] = $2
