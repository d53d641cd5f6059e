-- $1 batch size. Makes due scheduled and retryable jobs available, oldest first, and wakes each
-- queue's producers; SKIP LOCKED so that nodes staging at the same time never wait on each other.
WITH due AS (
    SELECT id
    FROM jobrunner_jobs
    WHERE state IN ('scheduled', 'retryable') AND scheduled_at <= now()
    ORDER BY scheduled_at, id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
),
staged AS (
    UPDATE jobrunner_jobs AS j
    SET state = 'available'
    FROM due
    WHERE j.id = due.id
    RETURNING j.queue
),
counted AS (
    SELECT queue, count(*) AS staged FROM staged GROUP BY queue
)
SELECT c.queue, c.staged, pg_notify('jobrunner_insert', c.queue) AS notified
FROM counted c
