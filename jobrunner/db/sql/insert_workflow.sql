-- $1 workflow id (add to it; null: a new workflow), $2 name, $3 job id (add to its workflow),
-- $4 step names text[], $5 workers, $6 queues, $7 args (json), $8 metas (json), $9 tags (json
-- arrays), $10 priorities int[], $11 max_attempts int[], $12 scheduled_ats timestamptz[],
-- $13 schedule_ins float8[], $14 deps (json arrays of step names), $15 ignore_cancelled
-- bool[], $16 ignore_discarded bool[], $17 existing steps depended on text[].
-- One row per step: see jobrunner_insert_workflow (migration 0007).
SELECT workflow_id, step, id, state, inserted_at, scheduled_at
FROM jobrunner_insert_workflow($1::bigint, $2::text, $3::bigint, $4::text[], $5::text[],
                               $6::text[], $7::text[], $8::text[], $9::text[], $10::int[],
                               $11::int[], $12::timestamptz[], $13::float8[], $14::text[],
                               $15::boolean[], $16::boolean[], $17::text[])
