-- $1 queues text[], $2 ids bigint[] (the drain's baseline), $3 max id at the start, $4 start
-- time. The jobs a drain ran: its baseline, and those inserted since that were attempted.
SELECT id, state::text AS state, queue, worker, args::text AS args, meta::text AS meta, tags, errors::text AS errors, attempt, max_attempts, priority, inserted_at, scheduled_at, attempted_at, completed_at, discarded_at, cancelled_at, attempted_by, unique_key
FROM jobrunner_jobs
WHERE queue = ANY($1::text[])
  AND (id = ANY($2::bigint[]) OR (id > $3 AND attempted_at >= $4))
ORDER BY id
