-- $1 name, $2 queues (json: name -> {limit, paused, running}), $3 lease seconds
UPDATE jobrunner_nodes
SET queues = $2::jsonb, heartbeat_at = now(), expires_at = now() + make_interval(secs => $3)
WHERE name = $1
RETURNING name
