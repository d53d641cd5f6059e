-- Every node row, whether its lease is current, and whether it holds a leadership lease.
SELECT n.name, n.host, n.pid, n.queues::text AS queues, n.started_at, n.heartbeat_at,
       n.expires_at, n.expires_at > now() AS live,
       EXISTS (
           SELECT 1 FROM jobrunner_leader AS l WHERE l.node = n.name AND l.expires_at > now()
       ) AS leader,
       now() AS now
FROM jobrunner_nodes AS n
ORDER BY n.started_at, n.name
