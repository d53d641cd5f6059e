-- $1 unique keys text[]. The jobs holding these keys (cron slots' jobs), by the unique index.
SELECT id, state::text AS state, unique_key
FROM jobrunner_jobs
WHERE unique_key = ANY($1::text[])
