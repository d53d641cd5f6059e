-- $1 workers text[], $2 queues text[], $3 args text[] (json), $4 metas text[] (json),
-- $5 tags text[] (json arrays), $6 priorities int[], $7 max_attempts int[],
-- $8 scheduled_ats timestamptz[] (null: see $9), $9 schedule_ins float8[] (seconds, null: now),
-- $10 unique_keys text[] (null: not unique), $11 unique_states text[] (array literals of
-- states), $12 unique_periods float8[] (seconds, null: for ever), $13 release executing
-- jobs' keys here (false in the caller's transaction: release_unique_keys.sql did it).
-- One row per input, in input order: the inserted job, or nulls where a unique job conflicts.
-- A unique job holds its key while it is in its unique states (a trigger releases it when it
-- leaves them). Before inserting, keys held by jobs older than the new job's period, or in
-- states the new job does not count, are released here, in the same statement, so the
-- unique index decides every conflict even between concurrent inserts.
WITH input AS (
    SELECT i.*, nextval((SELECT pg_get_serial_sequence('jobrunner_jobs', 'id'))::regclass) AS id,
           coalesce(i.scheduled_at,
                    now() + make_interval(secs => coalesce(i.schedule_in, 0))) AS run_at,
           i.unique_states::jobrunner_job_state[] AS states
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[],
                $7::int[], $8::timestamptz[], $9::float8[], $10::text[], $11::text[],
                $12::float8[])
         WITH ORDINALITY
         AS i(worker, queue, args, meta, tags, priority, max_attempts, scheduled_at,
              schedule_in, unique_key, unique_states, unique_period, ord)
),
keyed AS (
    SELECT i.*, s.state,
           CASE WHEN s.state = ANY (i.states) THEN i.unique_key END AS held_key
    FROM input i,
         LATERAL (SELECT CASE WHEN i.run_at > now() THEN 'scheduled' ELSE 'available'
                         END::jobrunner_job_state AS state) s
),
released AS (
    UPDATE jobrunner_jobs j
    SET unique_key = NULL
    FROM (SELECT DISTINCT ON (held_key) held_key, states, unique_period
          FROM keyed
          WHERE held_key IS NOT NULL
          ORDER BY held_key, ord) k
    WHERE j.unique_key = k.held_key
      AND (NOT (j.state = ANY (k.states))
           OR j.inserted_at <= now() - make_interval(secs => k.unique_period))
      AND (j.state <> 'executing' OR $13)
    RETURNING j.id
),
ins AS (
    INSERT INTO jobrunner_jobs (id, state, worker, queue, args, meta, tags, priority,
                                max_attempts, scheduled_at, unique_key, unique_states)
    OVERRIDING SYSTEM VALUE
    SELECT k.id, k.state, k.worker, k.queue, k.args::jsonb, k.meta::jsonb,
           CASE WHEN k.tags = '[]' THEN '{}'::text[]
                ELSE ARRAY(SELECT jsonb_array_elements_text(k.tags::jsonb)) END,
           k.priority, k.max_attempts, k.run_at, k.held_key,
           CASE WHEN k.held_key IS NOT NULL THEN k.states END
    FROM keyed k
    WHERE (SELECT count(*) FROM released) >= 0  -- release first
    ORDER BY k.held_key, k.ord  -- one lock order for every concurrent insert
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING *
),
woken AS (
    SELECT count(pg_notify('jobrunner_insert', q.queue)) AS n
    FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') q
)
SELECT k.ord, k.held_key, ins.id, ins.state::text AS state, ins.queue, ins.worker,
       ins.args::text AS args, ins.meta::text AS meta, ins.tags, ins.errors::text AS errors,
       ins.attempt, ins.max_attempts, ins.priority, ins.inserted_at, ins.scheduled_at,
       ins.attempted_at, ins.completed_at, ins.discarded_at, ins.cancelled_at,
       ins.attempted_by, ins.unique_key
FROM keyed k
LEFT JOIN ins ON ins.id = k.id
CROSS JOIN woken
ORDER BY k.ord
