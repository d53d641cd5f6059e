-- $1 queues text[], $2 states text[]. The workers of the jobs still to run in these queues.
SELECT DISTINCT worker
FROM jobrunner_jobs
WHERE queue = ANY($1::text[]) AND state::text = ANY($2::text[])
ORDER BY worker
