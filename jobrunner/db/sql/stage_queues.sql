-- $1 queues text[], $2 since (a drain's start). Scheduled and retryable jobs of these queues
-- become available now (drain --with-scheduled), and their producers are woken. A job that
-- snoozed since $2 is left: a drain runs a snoozed job once.
WITH staged AS (
    UPDATE jobrunner_jobs
    SET state = 'available', scheduled_at = now()
    WHERE queue = ANY($1::text[])
      AND state IN ('scheduled', 'retryable')
      AND NOT (state = 'scheduled' AND attempted_at IS NOT NULL AND attempted_at >= $2)
    RETURNING queue
)
SELECT count(pg_notify('jobrunner_insert', q.queue)) AS n
FROM (SELECT DISTINCT queue FROM staged) AS q
