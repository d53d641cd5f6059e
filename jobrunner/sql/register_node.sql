-- $1 name, $2 host, $3 pid, $4 queues (json), $5 lease seconds
INSERT INTO jobrunner_nodes (name, host, pid, queues, expires_at)
VALUES ($1, $2, $3, $4::jsonb, now() + make_interval(secs => $5))
ON CONFLICT (name) DO UPDATE
SET queues = excluded.queues, heartbeat_at = now(), expires_at = excluded.expires_at
