-- $1 name
DELETE FROM jobrunner_nodes WHERE name = $1
