-- $1 ids bigint[]. The ids among these whose job is cancelled: a node stops a job on a
-- cancel notification only once it has read this (anyone who can connect can NOTIFY).
SELECT id
FROM jobrunner_jobs
WHERE id = ANY($1::bigint[]) AND state = 'cancelled'
