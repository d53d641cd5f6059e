-- $1 workers text[], $2 queues text[], $3 args text[] (json), $4 metas text[] (json),
-- $5 tags text[] (json arrays), $6 priorities int[], $7 max_attempts int[],
-- $8 scheduled_ats timestamptz[] (null: see $9), $9 schedule_ins float8[] (seconds, null: now),
-- $10 unique_keys text[] (null: not unique), $11 unique_states text[] (array literals of
-- states), $12 unique_periods float8[] (seconds, null: for ever), $13 release executing
-- jobs' keys here (false in the caller's transaction: release_unique_keys.sql did it),
-- $14 replaces text[] (json objects: the existing job's state -> the fields a duplicate
-- overwrites; null: none).
-- Keys are distinct within one call (the caller splits duplicates into later calls).
-- One row per input, in input order: the inserted job; the existing job it replaced
-- (replaced = true), with its new values; or nulls where a unique job conflicts.
-- A unique job holds its key while it is in its unique states (a trigger releases it when it
-- leaves them). Before inserting, keys held by jobs older than the new job's period, or in
-- states the new job does not count, are released here, in the same statement, so the
-- unique index decides every conflict even between concurrent inserts. A job that still
-- holds the key and whose state the new job's replace names is locked and updated instead
-- (a concurrent insert waits for the lock, then updates it again: the last writer wins).
WITH input AS (
    SELECT i.*, nextval((SELECT pg_get_serial_sequence('jobrunner_jobs', 'id'))::regclass) AS id,
           coalesce(i.scheduled_at,
                    now() + make_interval(secs => coalesce(i.schedule_in, 0))) AS run_at,
           i.unique_states::jobrunner_job_state[] AS states
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[],
                $7::int[], $8::timestamptz[], $9::float8[], $10::text[], $11::text[],
                $12::float8[], $14::text[])
         WITH ORDINALITY
         AS i(worker, queue, args, meta, tags, priority, max_attempts, scheduled_at,
              schedule_in, unique_key, unique_states, unique_period, replace, ord)
),
keyed AS (
    SELECT i.*, s.state, i.replace::jsonb AS replace_by_state,
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
-- The jobs to replace, locked in one order for every concurrent insert. The conditions
-- are the complement of released's, so the two never touch the same row.
to_replace AS (
    SELECT j.id, k.ord, k.replace_by_state -> j.state::text AS fields
    FROM jobrunner_jobs j
    JOIN keyed k ON j.unique_key = k.held_key
    WHERE k.replace_by_state IS NOT NULL
      AND j.state = ANY (k.states)
      AND (k.unique_period IS NULL
           OR j.inserted_at > now() - make_interval(secs => k.unique_period))
      AND j.state <> 'executing'
      AND k.replace_by_state ? j.state::text
    ORDER BY j.id
    FOR UPDATE OF j
),
replaced AS (
    UPDATE jobrunner_jobs j
    SET args = CASE WHEN r.fields ? 'args' THEN k.args::jsonb ELSE j.args END,
        meta = CASE WHEN r.fields ? 'meta' THEN k.meta::jsonb ELSE j.meta END,
        tags = CASE WHEN NOT r.fields ? 'tags' THEN j.tags
                    WHEN k.tags = '[]' THEN '{}'::text[]
                    ELSE ARRAY(SELECT jsonb_array_elements_text(k.tags::jsonb)) END,
        priority = CASE WHEN r.fields ? 'priority' THEN k.priority ELSE j.priority END,
        max_attempts = CASE WHEN r.fields ? 'max_attempts' THEN k.max_attempts
                            ELSE j.max_attempts END,
        queue = CASE WHEN r.fields ? 'queue' THEN k.queue ELSE j.queue END,
        worker = CASE WHEN r.fields ? 'worker' THEN k.worker ELSE j.worker END,
        scheduled_at = CASE WHEN r.fields ? 'scheduled_at' THEN k.run_at ELSE j.scheduled_at END,
        -- moved later, a waiting job waits again; moved to now, it runs now
        state = CASE WHEN r.fields ? 'scheduled_at' AND j.state IN ('available', 'scheduled')
                     THEN k.state ELSE j.state END
    FROM to_replace r
    JOIN keyed k ON k.ord = r.ord
    WHERE j.id = r.id
    RETURNING r.ord, j.*
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
      AND NOT EXISTS (SELECT 1 FROM replaced r WHERE r.ord = k.ord)
    ORDER BY k.held_key, k.ord  -- one lock order for every concurrent insert
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING *
),
done AS (
    SELECT k.ord, false AS replaced, i.id, i.state, i.queue, i.worker, i.args, i.meta, i.tags,
           i.errors, i.attempt, i.max_attempts, i.priority, i.inserted_at, i.scheduled_at,
           i.attempted_at, i.completed_at, i.discarded_at, i.cancelled_at, i.attempted_by,
           i.unique_key
    FROM ins i JOIN keyed k ON k.id = i.id
    UNION ALL
    SELECT r.ord, true, r.id, r.state, r.queue, r.worker, r.args, r.meta, r.tags, r.errors,
           r.attempt, r.max_attempts, r.priority, r.inserted_at, r.scheduled_at,
           r.attempted_at, r.completed_at, r.discarded_at, r.cancelled_at, r.attempted_by,
           r.unique_key
    FROM replaced r
),
woken AS (
    SELECT count(pg_notify('jobrunner_insert', q.queue)) AS n
    FROM (SELECT DISTINCT queue FROM done WHERE state = 'available') q
)
SELECT k.ord, k.held_key, d.replaced, d.id, d.state::text AS state, d.queue, d.worker,
       d.args::text AS args, d.meta::text AS meta, d.tags, d.errors::text AS errors,
       d.attempt, d.max_attempts, d.priority, d.inserted_at, d.scheduled_at,
       d.attempted_at, d.completed_at, d.discarded_at, d.cancelled_at,
       d.attempted_by, d.unique_key
FROM keyed k
LEFT JOIN done d ON d.ord = k.ord
CROSS JOIN woken
ORDER BY k.ord
