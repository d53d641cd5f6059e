-- $1 max age in seconds. Old commands only matter as history.
DELETE FROM jobrunner_control
WHERE created_at < now() - make_interval(secs => $1)
