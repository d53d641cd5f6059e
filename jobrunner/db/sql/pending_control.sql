-- $1 node name, $2 queues text[], $3 snapshot (text, from control_prepare),
-- $4 started_at. Commands aimed at this node that it has not applied, oldest first:
-- the ones its start-up snapshot did not see, or issued after it registered.
-- A control transaction lasts milliseconds, so older rows are not looked at.
SELECT c.id, c.command, c.queue, c.node, c.payload::text AS payload, c.issued_by
FROM jobrunner_control AS c
WHERE c.created_at > $4::timestamptz - interval '1 hour'
  AND (c.node IS NULL OR c.node = $1)
  AND (c.queue IS NULL OR c.queue = ANY($2::text[]))
  AND (NOT pg_visible_in_snapshot(c.txid, $3::text::pg_snapshot) OR c.created_at >= $4::timestamptz)
  AND NOT EXISTS (
      SELECT 1 FROM jobrunner_control_applied AS a WHERE a.control_id = c.id AND a.node = $1
  )
ORDER BY c.id
