-- $1 queue, $2 global limit (null: back to the nodes' config). Read by every claim of the
-- queue, so it holds cluster-wide from its commit, and for nodes that start later.
INSERT INTO jobrunner_queues AS q (name, global_limit)
VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE
SET global_limit = $2, updated_at = now()
