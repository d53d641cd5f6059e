-- $1 queue, $2 jobs allowed, $3 period in seconds (both null: back to the nodes' config).
-- Written with the command that changes it; nodes that start later read it (control_prepare).
INSERT INTO jobrunner_queues AS q (name, rate_allowed, rate_period_s)
VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE
SET rate_allowed = $2, rate_period_s = $3, updated_at = now()
