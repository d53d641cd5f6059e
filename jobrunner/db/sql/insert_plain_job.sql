-- $1 worker, $2 queue, $3 args (json text), $4 meta (json text), $5 tags text[], $6 priority,
-- $7 max_attempts, $8 scheduled_at (null: see $9), $9 schedule_in (seconds, null: now).
-- One job that is not unique, so there is no key to release or conflict on (insert_jobs.sql
-- does both). Returns what the database decides; an available job wakes its queue at commit.
INSERT INTO jobrunner_jobs (state, worker, queue, args, meta, tags, priority, max_attempts,
                            scheduled_at)
SELECT CASE WHEN r.run_at > now() THEN 'scheduled' ELSE 'available' END::jobrunner_job_state,
       $1, $2, $3::text::jsonb, $4::text::jsonb, $5, $6::int, $7::int, r.run_at
FROM (SELECT coalesce($8::timestamptz,
                      now() + make_interval(secs => coalesce($9::float8, 0))) AS run_at) r
RETURNING id, state::text AS state, inserted_at, scheduled_at,
          CASE WHEN state = 'available' THEN pg_notify('jobrunner_insert', queue) END AS woken
