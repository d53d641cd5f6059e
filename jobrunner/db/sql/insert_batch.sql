-- $1 callbacks jsonb (condition -> job), $2 workers, $3 queues, $4 args (json), $5 metas
-- (json), $6 tags (json arrays), $7 priorities int[], $8 max_attempts int[],
-- $9 scheduled_ats timestamptz[], $10 schedule_ins float8[].
-- One row per job, in input order: see jobrunner_insert_batch (migration 0007).
SELECT batch_id, id, state, inserted_at, scheduled_at
FROM jobrunner_insert_batch($1::jsonb, $2::text[], $3::text[], $4::text[], $5::text[],
                            $6::text[], $7::int[], $8::int[], $9::timestamptz[], $10::float8[])
