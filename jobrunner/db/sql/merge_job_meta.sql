-- $1 job id, $2 json object merged into the job's meta (its keys win), $3 worker,
-- $4 attempt: only the run that is executing (not a job built by a test helper).
UPDATE jobrunner_jobs SET meta = meta || $2::jsonb
WHERE id = $1 AND worker = $3 AND attempt = $4 AND state = 'executing'
