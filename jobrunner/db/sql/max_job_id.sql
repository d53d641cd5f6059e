-- no parameters. The newest job's id (0 when there is none): a drain that does not recurse
-- leaves the jobs inserted after it began.
SELECT coalesce(max(id), 0) AS max_id FROM jobrunner_jobs
