-- $1 queues text[], $2 states text[], $3 since (a drain's start, null: none). Per queue, how
-- many jobs are still to run; a job that snoozed since $3 is not waited for.
SELECT queue, count(*) AS n
FROM jobrunner_jobs
WHERE queue = ANY($1::text[])
  AND state::text = ANY($2::text[])
  AND NOT (state = 'scheduled' AND attempted_at IS NOT NULL AND attempted_at >= coalesce($3::timestamptz, 'infinity'))
GROUP BY queue
ORDER BY queue
