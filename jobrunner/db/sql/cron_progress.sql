-- $1 entry names text[]. The last slot each cron entry was inserted for.
SELECT name, last_slot
FROM jobrunner_cron
WHERE name = ANY($1::text[])
