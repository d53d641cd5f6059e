-- $1 id. A job that is not executing is deleted. No row: it does not exist or is executing.
DELETE FROM jobrunner_jobs
WHERE id = $1 AND state <> 'executing'
RETURNING id
