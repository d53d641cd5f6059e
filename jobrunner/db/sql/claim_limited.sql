-- $1 queue, $2 demand, $3 node name, $4 claim id (as in fetch_jobs.sql), $5 global limit
-- (null: none), $6 rate allowed (null: none), $7 rate period seconds, $8 partition fields
-- text[], $9 partition keys text[].
-- The claim of a queue with cluster-wide limits: see jobrunner_claim_limited (migration 4).
SELECT j.id, 'executing' AS state, j.queue, j.worker, j.args::text AS args, j.meta::text AS meta,
       j.tags, j.errors::text AS errors, j.attempt, j.max_attempts, j.priority, j.inserted_at,
       j.scheduled_at, j.attempted_at, j.completed_at, j.discarded_at, j.cancelled_at,
       j.attempted_by, j.unique_key
FROM jobrunner_claim_limited($1, $2, $3, $4, $5, $6, $7, $8::text[], $9::text[]) AS j
