-- $1 control id. The nodes that applied the command.
SELECT node, applied_at, result::text AS result
FROM jobrunner_control_applied
WHERE control_id = $1
ORDER BY node
