-- Writes a node's pending acks and claims jobs for one queue, in one statement and one
-- commit: under load a producer's next fetch carries the acks of the jobs that just ended;
-- with demand 0 it only acks.
-- $1 node name, $2 ids bigint[], $3 attempts int[], $4 states text[],
-- $5 delays float8[] (seconds from now for scheduled_at, null: unchanged),
-- $6 errors text[] (json object appended to errors, null: none),
-- $7 undo bool[] (true: the attempt does not count, as for a snooze or a shutdown);
-- $8 queue, $9 demand (0: only ack), $10 claim id (as in fetch_jobs.sql),
-- $11 claims text[] (the claim id of the run each ack ends, null: a claim without one),
-- $12 results text[] (json recorded with a completed job, null: none).
-- $13 how many of the claimed jobs start now (null: all; the rest are claimed ahead, as in
-- fetch_jobs.sql).
-- An ack to 'executing' changes nothing but `ahead`: a job claimed ahead has started.
-- Only jobs this node still owns, in the run that ended (same claim, same attempt), change:
-- a rescued job is never acked twice, and an outcome resent after an ambiguous failure never
-- lands on a later run of the same job by this node (a snooze gives the attempt back, so
-- only the claim tells the runs apart). Jobs put back to available (a shutdown) wake the producers of their queue on every
-- node.
-- Rows: one per ack this node still owned (acked = true, only id set), then the claimed
-- jobs (acked = false). Both halves read the same snapshot and touch different rows: acks
-- change executing jobs, the claim takes available ones.
WITH acked AS (
    UPDATE jobrunner_jobs AS j
    SET state = a.state::jobrunner_job_state,
        scheduled_at = CASE WHEN a.delay IS NULL THEN j.scheduled_at
                            ELSE now() + make_interval(secs => a.delay) END,
        completed_at = CASE WHEN a.state = 'completed' THEN now() ELSE j.completed_at END,
        discarded_at = CASE WHEN a.state = 'discarded' THEN now() ELSE j.discarded_at END,
        cancelled_at = CASE WHEN a.state = 'cancelled' THEN now() ELSE j.cancelled_at END,
        -- the latest 20 errors (MAX_ERRORS in _executor.py); errors that are not a list
        -- (written by hand) start again
        errors = CASE WHEN a.error IS NULL THEN j.errors
                      WHEN jsonb_typeof(j.errors) <> 'array' THEN jsonb_build_array(a.error::jsonb)
                      ELSE jsonb_path_query_array(j.errors, '$[last - 18 to last]')
                           || jsonb_build_array(a.error::jsonb) END,
        attempt = j.attempt - a.undo::int,
        ahead = false,
        -- a snooze (the only ack to 'scheduled') counts itself in meta, as Oban does
        meta = CASE WHEN a.state <> 'scheduled' THEN j.meta
                    ELSE j.meta || jsonb_build_object('snoozed', 1 + CASE
                        WHEN jsonb_typeof(j.meta -> 'snoozed') = 'number'
                        THEN (j.meta ->> 'snoozed')::numeric::int ELSE 0 END) END,
        result = CASE WHEN a.result IS NULL THEN j.result ELSE a.result::jsonb END
    FROM unnest($2::bigint[], $3::int[], $4::text[], $5::float8[], $6::text[], $7::boolean[],
                $11::text[], $12::text[])
         AS a(id, attempt, state, delay, error, undo, claim, result)
    WHERE j.id = a.id
      -- attempt, state and owner in one condition on both sides: as separate conditions
      -- the cached generic plan scans the executing index and compares every pair of rows
      -- (quadratic in the batch: 2,000 acks took 2 s).
      AND j.attempt = CASE WHEN j.state = 'executing' AND j.attempted_by[1] = $1
                                AND j.attempted_by[2] IS NOT DISTINCT FROM a.claim
                           THEN a.attempt END
    RETURNING j.id, j.queue, a.state
),
woken AS (
    SELECT count(pg_notify('jobrunner_insert', q.queue)) AS n
    FROM (SELECT DISTINCT queue FROM acked WHERE state = 'available') q
),
picked AS MATERIALIZED (
    SELECT ARRAY(
        SELECT id
        FROM jobrunner_jobs
        WHERE state = 'available' AND queue = $8
        ORDER BY priority, scheduled_at, id
        LIMIT $9
        FOR UPDATE SKIP LOCKED
    ) AS ids
),
claimed AS (
    UPDATE jobrunner_jobs AS j
    SET state = 'executing',
        attempt = least(j.attempt + 1, 32767),  -- smallint: a failure there discards
        attempted_at = now(),
        attempted_by = array_remove(ARRAY[$1::text, $10::text], NULL),
        ahead = coalesce(array_position(p.ids, j.id) > $13::int, false)
    -- by primary key, whatever the plan: see fetch_jobs.sql
    FROM picked AS p
    WHERE j.id = ANY (p.ids)
    RETURNING j.*
)
SELECT true AS acked, acked.id, NULL AS state, NULL AS queue, NULL AS worker, NULL AS args,
       NULL AS meta, NULL::text[] AS tags, NULL AS errors, NULL::smallint AS attempt,
       NULL::smallint AS max_attempts, NULL::smallint AS priority,
       NULL::timestamptz AS inserted_at, NULL::timestamptz AS scheduled_at,
       NULL::timestamptz AS attempted_at, NULL::timestamptz AS completed_at,
       NULL::timestamptz AS discarded_at, NULL::timestamptz AS cancelled_at,
       NULL::text[] AS attempted_by, NULL AS unique_key, NULL::boolean AS ahead
FROM acked, woken
UNION ALL
SELECT false, c.id, 'executing', c.queue, c.worker, c.args::text, c.meta::text, c.tags,
       c.errors::text, c.attempt, c.max_attempts, c.priority, c.inserted_at,
       least(c.scheduled_at, '9999-12-31 23:59:59.999999+00'),  -- as far as Python reads
       c.attempted_at, c.completed_at, c.discarded_at, c.cancelled_at, c.attempted_by,
       c.unique_key, c.ahead
FROM claimed c
