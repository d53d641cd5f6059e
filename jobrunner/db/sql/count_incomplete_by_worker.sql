-- $1 worker names text[]: how many jobs of each are incomplete (waiting, running, retrying).
SELECT worker, count(*) AS incomplete
FROM jobrunner_jobs
WHERE worker = ANY ($1::text[])
  AND state IN ('available', 'scheduled', 'executing', 'retryable')
GROUP BY worker
