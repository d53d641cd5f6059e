-- $1 leadership name, $2 node name, $3 lease seconds. Takes the lease if it is free or expired,
-- renews it if this node holds it; a row comes back only when this node leads. The database's
-- clock decides expiry, so nodes whose clocks differ agree on it.
INSERT INTO jobrunner_leader AS l (name, node, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3))
ON CONFLICT (name) DO UPDATE
SET node = excluded.node,
    expires_at = excluded.expires_at,
    elected_at = CASE WHEN l.node = excluded.node THEN l.elected_at ELSE now() END
WHERE l.node = excluded.node OR l.expires_at < now()
RETURNING l.node, l.elected_at
