-- The persisted global limits (set with `jobrunner scale QUEUE --global N`).
SELECT name, global_limit
FROM jobrunner_queues
WHERE global_limit IS NOT NULL
