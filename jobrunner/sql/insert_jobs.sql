-- $1 workers text[], $2 queues text[], $3 args text[] (json), $4 metas text[] (json),
-- $5 tags text[] (json arrays), $6 priorities int[], $7 max_attempts int[],
-- $8 scheduled_ats timestamptz[] (null: see $9), $9 schedule_ins float8[] (seconds, null: now),
-- $10 unique_keys text[] (null: not unique), $11 unique_states text[] (json arrays)
-- Rows come back in input order, less the ones a unique conflict skipped.
WITH input AS (
    SELECT *
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[],
                $7::int[], $8::timestamptz[], $9::float8[], $10::text[], $11::text[])
         WITH ORDINALITY
         AS i(worker, queue, args, meta, tags, priority, max_attempts, scheduled_at,
              schedule_in, unique_key, unique_states, ord)
),
timed AS (
    SELECT i.*, coalesce(i.scheduled_at, now() + make_interval(secs => coalesce(i.schedule_in, 0))) AS run_at
    FROM input i
),
ins AS (
    INSERT INTO jobrunner_jobs (state, worker, queue, args, meta, tags, priority, max_attempts,
                                scheduled_at, unique_key, unique_states)
    SELECT CASE WHEN t.run_at > now() THEN 'scheduled' ELSE 'available' END::jobrunner_job_state,
           t.worker, t.queue, t.args::jsonb, t.meta::jsonb,
           ARRAY(SELECT jsonb_array_elements_text(t.tags::jsonb)),
           t.priority, t.max_attempts, t.run_at, t.unique_key,
           CASE WHEN t.unique_key IS NULL THEN NULL
                ELSE ARRAY(SELECT jsonb_array_elements_text(t.unique_states::jsonb))::jobrunner_job_state[]
           END
    FROM timed t
    ORDER BY t.ord
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING *
),
woken AS (
    SELECT count(pg_notify('jobrunner_insert', q.queue)) AS n
    FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') q
)
SELECT id, state::text AS state, queue, worker, args::text AS args, meta::text AS meta, tags, errors::text AS errors, attempt, max_attempts, priority, inserted_at, scheduled_at, attempted_at, completed_at, discarded_at, cancelled_at, attempted_by, unique_key
FROM ins, woken
ORDER BY id
