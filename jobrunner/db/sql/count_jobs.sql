-- How many jobs each queue holds in each state.
SELECT queue, state::text AS state, count(*) AS n
FROM jobrunner_jobs
GROUP BY queue, state
ORDER BY queue, state
