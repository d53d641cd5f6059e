-- Jobs finished per minute since $1 (the start of a minute), by outcome: completed,
-- discarded, cancelled. A range scan of the pruner's index over those rows only: the
-- dashboard reads the hour once, then only the minutes still moving.
SELECT date_trunc('minute', coalesce(completed_at, cancelled_at, discarded_at)) AS minute,
       state::text AS state, count(*) AS n
FROM jobrunner_jobs
WHERE state IN ('completed', 'cancelled', 'discarded')
  AND coalesce(completed_at, cancelled_at, discarded_at) >= $1::timestamptz
GROUP BY 1, 2
ORDER BY 1
