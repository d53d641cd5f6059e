-- $1 leadership name, $2 node name. Gives the lease up and tells the other nodes to take it now.
WITH resigned AS (
    DELETE FROM jobrunner_leader
    WHERE name = $1 AND node = $2
    RETURNING name
)
SELECT r.name, pg_notify('jobrunner_leader', r.name) AS notified
FROM resigned r
