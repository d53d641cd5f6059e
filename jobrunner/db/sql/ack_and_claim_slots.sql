-- $1 node name, $2-$7, $11 and $17 the acks (as in ack_and_fetch_jobs.sql: ids, attempts,
-- states, delays, errors, undo, claims, results), $8 queue, $9 demand, $10 claim id, $12 how
-- many of the claimed jobs start now (the others are claimed ahead), $13 global limit, $14
-- the node's own limit, $15 jobs the node holds that need a slot (running or waiting in its
-- buffer), $16 the slots it keeps.
-- A slot-counted queue's claim when the node's slots change: see jobrunner_ack_claim_slots
-- (migration 12). Rows: one per ack this node still owned (acked = true, only id set), the
-- claimed jobs (acked = false), last the node's slots (acked null: held, and its fair share
-- when other nodes wait for slots).
SELECT r.acked, coalesce(r.acked_id, (r.job).id) AS id, 'executing' AS state,
       (r.job).queue, (r.job).worker, (r.job).args::text AS args, (r.job).meta::text AS meta,
       (r.job).tags, (r.job).errors::text AS errors, (r.job).attempt, (r.job).max_attempts,
       (r.job).priority, (r.job).inserted_at,
       least((r.job).scheduled_at, '9999-12-31 23:59:59.999999+00') AS scheduled_at,
       (r.job).attempted_at, (r.job).completed_at, (r.job).discarded_at, (r.job).cancelled_at,
       (r.job).attempted_by, (r.job).unique_key, (r.job).ahead, r.held, r.cap
FROM jobrunner_ack_claim_slots(
    $1, $2::bigint[], $3::int[], $4::text[], $5::float8[], $6::text[], $7::boolean[],
    $11::text[], $17::text[], $8, $9, $10, $12, $13, $14, $15, $16
) AS r
