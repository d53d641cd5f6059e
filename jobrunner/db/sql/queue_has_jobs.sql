-- $1 queue
SELECT EXISTS (SELECT 1 FROM jobrunner_jobs WHERE queue = $1) AS found
