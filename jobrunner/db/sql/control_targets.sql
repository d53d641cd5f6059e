-- $1 control id. The live nodes the command is aimed at and that started before it was
-- issued (a node that started later read the persisted state instead). Rows that serve no
-- queue (a drain or an inline test process holding a lease) run no control loop.
SELECT n.name
FROM jobrunner_control c
JOIN jobrunner_nodes n
  ON (c.node IS NULL OR n.name = c.node)
 AND (c.queue IS NULL OR n.queues ? c.queue)
WHERE c.id = $1
  AND n.expires_at > now()
  AND n.queues <> '{}'::jsonb
  AND n.started_at <= c.created_at
ORDER BY n.name
