-- Jobs finished per minute over the last hour, by outcome: completed, discarded, cancelled.
-- A range scan of the pruner's index over the last hour's finished rows only.
SELECT date_trunc('minute', coalesce(completed_at, cancelled_at, discarded_at)) AS minute,
       state::text AS state, count(*) AS n
FROM jobrunner_jobs
WHERE state IN ('completed', 'cancelled', 'discarded')
  AND coalesce(completed_at, cancelled_at, discarded_at) >= now() - interval '1 hour'
GROUP BY 1, 2
ORDER BY 1
