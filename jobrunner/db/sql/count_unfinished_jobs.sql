-- How many jobs each queue holds in each state that has not finished. One branch per
-- partial index (fetch, stage, executing), so finished rows, however many, are not read.
SELECT queue, 'available' AS state, count(*) AS n
FROM jobrunner_jobs WHERE state = 'available' GROUP BY queue
UNION ALL
SELECT queue, state::text, count(*)
FROM jobrunner_jobs WHERE state IN ('scheduled', 'retryable') GROUP BY queue, state
UNION ALL
SELECT queue, 'executing', count(*)
FROM jobrunner_jobs WHERE state = 'executing' GROUP BY queue
