-- no parameters. Forgets nodes whose lease expired (after their jobs were rescued), so that
-- status only lists live nodes. A live node whose row went re-registers on its next heartbeat.
DELETE FROM jobrunner_nodes
WHERE expires_at < now()
RETURNING name
