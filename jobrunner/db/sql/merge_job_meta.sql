-- $1 job id, $2 json object merged into the job's meta (its keys win).
UPDATE jobrunner_jobs SET meta = meta || $2::jsonb WHERE id = $1
