-- The persisted queue state (paused, limit override) that nodes load when they start.
SELECT name, paused, "limit"
FROM jobrunner_queues
ORDER BY name
