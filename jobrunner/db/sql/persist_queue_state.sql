-- $1 queue, $2 paused (null: unchanged; unset on a new row), $3 limit (null: unchanged), $4 true: forget the
-- limit (nodes run the limit they were started with).
-- What nodes that start later honour, written with the command that changed it.
INSERT INTO jobrunner_queues AS q (name, paused, "limit")
VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE
SET paused = coalesce($2, q.paused),
    "limit" = CASE WHEN $4 THEN NULL ELSE coalesce($3, q."limit") END,
    updated_at = now()
