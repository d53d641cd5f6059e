-- $1 workers text[], $2 queues text[], $3 args text[] (json), $4 metas text[] (json),
-- $5 tags text[] (json arrays), $6 priorities int[], $7 max_attempts int[], $8 unique_keys text[],
-- $9 entry names text[], $10 last slots timestamptz[], $11 the present (null: now()).
-- One job per entry and slot: the unique key names both and is unique in every state, so a
-- second leader, a restart or a retried tick inserts nothing. Progress only moves forward,
-- unless the stored slot is ahead of the present: a clock that stepped back (or jumped
-- forward for a while) must not silence the entry until real time catches up.
WITH input AS (
    SELECT *
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[],
                $7::int[], $8::text[])
         WITH ORDINALITY
         AS i(worker, queue, args, meta, tags, priority, max_attempts, unique_key, ord)
),
ins AS (
    INSERT INTO jobrunner_jobs (state, worker, queue, args, meta, tags, priority, max_attempts,
                                scheduled_at, unique_key, unique_states)
    SELECT 'available', i.worker, i.queue, i.args::jsonb, i.meta::jsonb,
           ARRAY(SELECT jsonb_array_elements_text(i.tags::jsonb)),
           i.priority, i.max_attempts, now(), i.unique_key,
           enum_range(NULL::jobrunner_job_state)
    FROM input i
    ORDER BY i.ord
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING *
),
progress AS (
    INSERT INTO jobrunner_cron AS c (name, last_slot)
    SELECT p.name, p.last_slot
    FROM unnest($9::text[], $10::timestamptz[]) AS p(name, last_slot)
    ON CONFLICT (name) DO UPDATE
    SET last_slot = CASE WHEN c.last_slot > coalesce($11::timestamptz, now())
                         THEN excluded.last_slot
                         ELSE greatest(c.last_slot, excluded.last_slot) END,
        updated_at = now()
    RETURNING c.name
),
woken AS (
    SELECT count(pg_notify('jobrunner_insert', q.queue)) AS n
    FROM (SELECT DISTINCT queue FROM ins) q
)
SELECT id, state::text AS state, queue, worker, args::text AS args, meta::text AS meta, tags, errors::text AS errors, attempt, max_attempts, priority, inserted_at, scheduled_at, attempted_at, completed_at, discarded_at, cancelled_at, attempted_by, unique_key
FROM ins, woken, (SELECT count(*) FROM progress) AS recorded
ORDER BY id
