-- $1 workers text[], $2 queues text[], $3 args text[] (json), $4 metas text[] (json),
-- $5 tags text[] (json arrays), $6 priorities int[], $7 max_attempts int[],
-- $8 scheduled_ats timestamptz[] (null: see $9), $9 schedule_ins float8[] (seconds, null: now).
-- $3 holds one value per job. $1, $2 and $4 to $7 hold one per job, or a single one for all;
-- $8 and $9 one per job, or none (null for all).
-- Jobs that are not unique, so there is no key to release or conflict on (insert_jobs.sql
-- does both). Returns what the database decides, in one row: the jobs' ids, states and
-- scheduled_at (null: inserted_at), aligned, and the inserted_at they share. The ids are
-- drawn in input order, so in id order the jobs are in input order (the arrays are in insert
-- order, which is id order, without the cost of sorting them). Queues with available jobs
-- wake at commit.
WITH ins AS (
    INSERT INTO jobrunner_jobs (state, worker, queue, args, meta, tags, priority,
                                max_attempts, scheduled_at)
    SELECT CASE WHEN i.run_at > now() THEN 'scheduled' ELSE 'available'
           END::jobrunner_job_state,
           i.worker, i.queue, i.args::jsonb, i.meta::jsonb,
           CASE WHEN i.tags = '[]' THEN '{}'::text[]
                ELSE ARRAY(SELECT jsonb_array_elements_text(i.tags::jsonb)) END,
           i.priority, i.max_attempts, i.run_at
    FROM (SELECT coalesce(u.worker, $1[1]) AS worker, coalesce(u.queue, $2[1]) AS queue,
                 u.args, coalesce(u.meta, $4[1]) AS meta, coalesce(u.tags, $5[1]) AS tags,
                 coalesce(u.priority, $6[1]) AS priority,
                 coalesce(u.max_attempts, $7[1]) AS max_attempts,
                 coalesce(u.scheduled_at,
                          now() + make_interval(secs => coalesce(u.schedule_in, 0))) AS run_at
          FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[],
                      $7::int[], $8::timestamptz[], $9::float8[])
               WITH ORDINALITY
               AS u(worker, queue, args, meta, tags, priority, max_attempts, scheduled_at,
                    schedule_in, ord)
          ORDER BY u.ord) i
    RETURNING id, state, queue, inserted_at, scheduled_at
),
woken AS (
    SELECT count(pg_notify('jobrunner_insert', q.queue)) AS n
    FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') q
)
SELECT array_agg(ins.id) AS ids, array_agg(ins.state::text) AS states,
       array_agg(nullif(ins.scheduled_at, ins.inserted_at)) AS scheduled_ats,
       min(ins.inserted_at) AS inserted_at
FROM ins CROSS JOIN woken
