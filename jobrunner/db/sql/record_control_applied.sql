-- $1 control ids bigint[], $2 node name, $3 results text[] (json objects)
INSERT INTO jobrunner_control_applied (control_id, node, result)
SELECT a.id, $2, a.result::jsonb
FROM unnest($1::bigint[], $3::text[]) AS a(id, result)
ON CONFLICT (control_id, node) DO NOTHING
