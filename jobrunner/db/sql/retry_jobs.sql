-- $1 states text[], $2 queue (null: any), $3 worker (null: any). Every matching job that is
-- not executing becomes available now, with one more attempt if it has none left.
WITH retried AS (
    UPDATE jobrunner_jobs
    SET state = 'available',
        scheduled_at = now(),
        max_attempts = greatest(max_attempts, least(attempt + 1, 32767)),
        completed_at = NULL, discarded_at = NULL, cancelled_at = NULL
    WHERE state::text = ANY($1::text[])
      AND state <> 'executing'
      AND ($2::text IS NULL OR queue = $2)
      AND ($3::text IS NULL OR worker = $3)
    RETURNING id, queue
),
woken AS (
    SELECT count(pg_notify('jobrunner_insert', q.queue)) AS n
    FROM (SELECT DISTINCT queue FROM retried) AS q
)
SELECT retried.id FROM retried, woken ORDER BY retried.id
