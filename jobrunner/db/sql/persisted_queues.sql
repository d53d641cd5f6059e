-- The persisted queue state (paused, limit override) that nodes load when they start; an
-- unset pause reads as not paused.
SELECT name, coalesce(paused, false) AS paused, "limit"
FROM jobrunner_queues
ORDER BY name
