-- $1 node name, $2 queues text[]. One statement, so one snapshot: the persisted state of
-- these queues, and the snapshot itself. The node later applies every command this
-- snapshot did not see, plus any issued since it registered (started_at).
SELECT s.snapshot, coalesce(n.started_at, s.now) AS started_at, q.name, q.paused, q."limit",
       q.global_limit, q.rate_allowed, q.rate_period_s
FROM (SELECT pg_current_snapshot()::text AS snapshot, now() AS now) AS s
LEFT JOIN jobrunner_nodes AS n ON n.name = $1
LEFT JOIN jobrunner_queues AS q ON q.name = ANY($2::text[])
ORDER BY q.name
