-- $1 queue, $2 paused (null: unchanged), $3 limit (null: unchanged).
-- What nodes that start later honour, written with the command that changed it.
INSERT INTO jobrunner_queues AS q (name, paused, "limit")
VALUES ($1, coalesce($2, false), $3)
ON CONFLICT (name) DO UPDATE
SET paused = coalesce($2, q.paused),
    "limit" = coalesce($3, q."limit"),
    updated_at = now()
