-- $1 node name, $2 claim ids text[]. The jobs these claims of the node took and it still
-- holds: the claims' replies were lost, so the node never learnt what they returned.
SELECT id, state::text AS state, queue, worker, args::text AS args, meta::text AS meta, tags, errors::text AS errors, attempt, max_attempts, priority, inserted_at, least(scheduled_at, '9999-12-31 23:59:59.999999+00') AS scheduled_at, attempted_at, completed_at, discarded_at, cancelled_at, attempted_by, unique_key
FROM jobrunner_jobs
WHERE state = 'executing' AND attempted_by[1] = $1 AND attempted_by[2] = ANY($2::text[])
