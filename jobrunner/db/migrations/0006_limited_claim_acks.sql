-- jobrunner schema, version 6: a limited queue's claim writes the node's outcomes in the
-- same statement (one round trip, as the plain claim does), and a partitioned queue's claim
-- reads each partition's first waiting jobs through an index instead of ranking every
-- waiting job of the queue.

-- The partition of a waiting job of a partitioned queue, filed by the queue's claims: the
-- queue's partition options' tag (jobrunner_partition_tag), then jobrunner_partition(). Null
-- until then, and in every queue without partitions. A key filed under other options (the
-- config changed) has another tag: the claim never reads it and files the job again.
ALTER TABLE jobrunner_jobs ADD COLUMN partition_key text COLLATE "C";

CREATE INDEX jobrunner_jobs_partition_idx
    ON jobrunner_jobs (queue, partition_key, priority, scheduled_at, id)
    WHERE state = 'available' AND partition_key IS NOT NULL;

-- How far a partitioned queue's waiting jobs are filed under one tag: every job with an id
-- up to `filed_to`, and when the last pass over all of them was (`swept_at`: it files the
-- jobs that became available with a smaller id, staged or committed late).
CREATE TABLE jobrunner_partition_files (
    queue     text NOT NULL,
    tag       text NOT NULL,
    filed_to  bigint NOT NULL,
    swept_at  timestamptz NOT NULL,
    PRIMARY KEY (queue, tag)
);

-- The tag of a queue's partition options: 8 hex digits and ':' (';' bounds its keys).
CREATE FUNCTION jobrunner_partition_tag(fields text[], keys text[])
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT left(md5(jsonb_build_array(fields, keys)::text), 8) || ':'
$$;

-- A job claimed ahead of a free slot: `executing` under the node's name and claim (so the
-- rescuer and every ack treat it as the node's), not started yet. The node starts it when a
-- slot frees up, and its next statement clears the flag (an ack to 'executing'); only
-- meaningful while the job is executing. Queues with cluster-wide limits never claim ahead.
ALTER TABLE jobrunner_jobs ADD COLUMN ahead boolean NOT NULL DEFAULT false;

-- Writes a node's outcomes: the UPDATE of ack_and_fetch_jobs.sql (see there), as a function
-- so that the limited claim below runs it first. Returns the jobs this node still owned.
-- plpgsql: its body is read at its first call, so it may write `result`, the column that
-- migration 7 adds (a completed job's recorded result).
CREATE FUNCTION jobrunner_ack(
    p_node text, p_ids bigint[], p_attempts int[], p_states text[], p_delays float8[],
    p_errors text[], p_undo boolean[], p_claims text[], p_results text[]
) RETURNS TABLE (id bigint, queue text, state text) LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH acked AS (
        UPDATE jobrunner_jobs AS j
        SET state = a.state::jobrunner_job_state,
            scheduled_at = CASE WHEN a.delay IS NULL THEN j.scheduled_at
                                ELSE now() + make_interval(secs => a.delay) END,
            completed_at = CASE WHEN a.state = 'completed' THEN now() ELSE j.completed_at END,
            discarded_at = CASE WHEN a.state = 'discarded' THEN now() ELSE j.discarded_at END,
            cancelled_at = CASE WHEN a.state = 'cancelled' THEN now() ELSE j.cancelled_at END,
            errors = CASE WHEN a.error IS NULL THEN j.errors
                          WHEN jsonb_typeof(j.errors) <> 'array'
                          THEN jsonb_build_array(a.error::jsonb)
                          ELSE jsonb_path_query_array(j.errors, '$[last - 18 to last]')
                               || jsonb_build_array(a.error::jsonb) END,
            attempt = j.attempt - a.undo::int,
            ahead = false,
            meta = CASE WHEN a.state <> 'scheduled' THEN j.meta
                        ELSE j.meta || jsonb_build_object('snoozed', 1 + CASE
                            WHEN jsonb_typeof(j.meta -> 'snoozed') = 'number'
                            THEN (j.meta ->> 'snoozed')::numeric::int ELSE 0 END) END,
            result = CASE WHEN a.result IS NULL THEN j.result ELSE a.result::jsonb END
        FROM unnest(p_ids, p_attempts, p_states, p_delays, p_errors, p_undo, p_claims,
                    p_results)
             AS a(id, attempt, state, delay, error, undo, claim, result)
        WHERE j.id = a.id
          AND j.attempt = CASE WHEN j.state = 'executing' AND j.attempted_by[1] = p_node
                                    AND j.attempted_by[2] IS NOT DISTINCT FROM a.claim
                               THEN a.attempt END
        RETURNING j.id, j.queue, a.state
    ),
    woken AS (
        SELECT count(pg_notify('jobrunner_insert', q.queue)) AS n
        FROM (SELECT DISTINCT acked.queue FROM acked WHERE acked.state = 'available') AS q
    )
    SELECT acked.id, acked.queue, acked.state FROM acked, woken;
END;
$$;

-- Files the waiting jobs of a partitioned queue that have no key under these options yet:
-- at every claim, those inserted since the last claim (a short range of the primary key,
-- from `filed_to`); every one when the last pass is older than half a second. Runs under the
-- queue's claim lock; a row the pass finds locked by another transaction is filed later.
CREATE FUNCTION jobrunner_file_partitions(p_queue text, p_fields text[], p_keys text[])
RETURNS void LANGUAGE plpgsql VOLATILE
-- A burst inserted since the table's last analyze looks empty to the planner, which then
-- scanned the whole table (or every waiting job of the queue) at each claim: 20 ms for 10,000.
SET enable_seqscan = off AS $$
DECLARE
    v_tag text := jobrunner_partition_tag(p_fields, p_keys);
    v_top bigint := (SELECT max(j.id) FROM jobrunner_jobs AS j);
    v_file jobrunner_partition_files;
    v_all boolean;
BEGIN
    SELECT * INTO v_file FROM jobrunner_partition_files AS f
    WHERE f.queue = p_queue AND f.tag = v_tag;
    -- (ids above the newest job: the table was emptied and its ids restarted)
    v_all := v_file.queue IS NULL OR v_file.swept_at < clock_timestamp() - interval '0.5 s'
             OR v_file.filed_to > coalesce(v_top, 0);
    IF v_all THEN  -- through the fetch index (no seq scan: see below)
        UPDATE jobrunner_jobs AS j
        SET partition_key = v_tag || jobrunner_partition(j.worker, j.args, p_fields, p_keys)
        WHERE j.id = ANY (ARRAY(
            SELECT l.id FROM jobrunner_jobs AS l
            WHERE l.state = 'available' AND l.queue = p_queue
              AND (l.partition_key IS NULL OR l.partition_key < v_tag
                   OR l.partition_key >= left(v_tag, 8) || ';')
            FOR UPDATE SKIP LOCKED));
    ELSE
        -- The ids above `filed_to`: a range of the primary key, whatever the statistics (the
        -- conditions on state and queue are written so that no other index can serve them).
        UPDATE jobrunner_jobs AS j
        SET partition_key = v_tag || jobrunner_partition(j.worker, j.args, p_fields, p_keys)
        WHERE j.id = ANY (ARRAY(
            SELECT l.id FROM jobrunner_jobs AS l
            WHERE l.id > v_file.filed_to AND l.partition_key IS NULL
              AND l.state::text = 'available' AND (l.queue || '') = p_queue
            FOR UPDATE SKIP LOCKED));
    END IF;
    INSERT INTO jobrunner_partition_files AS f (queue, tag, filed_to, swept_at)
    VALUES (p_queue, v_tag, coalesce(v_top, 0), clock_timestamp())
    ON CONFLICT (queue, tag) DO UPDATE
    SET filed_to = CASE WHEN v_all THEN excluded.filed_to
                        ELSE greatest(f.filed_to, excluded.filed_to) END,
        swept_at = CASE WHEN v_all THEN excluded.swept_at ELSE f.swept_at END;
END;
$$;

-- The limited claim of migration 5, with the partitioned case through the index: the
-- partitions that have waiting jobs are found by a skip scan (one probe each), and only the
-- first jobs of each partition with room are ranked. Everything else is as in migration 5:
-- the queue's advisory lock, the counts read after it, the fair order across partitions.
CREATE OR REPLACE FUNCTION jobrunner_claim_limited(
    p_queue text, p_demand integer, p_node text, p_claim text,
    p_global_limit integer, p_rate_allowed integer, p_rate_period_s float8,
    p_fields text[], p_keys text[]
) RETURNS SETOF jobrunner_jobs LANGUAGE plpgsql VOLATILE
-- Its statements' cached plans may look costly (a generic estimate of the partitions' skip
-- scan): compiling them (JIT) took 30 ms for a claim that takes 1.
-- Its count of the queue's executing jobs reads jobrunner_jobs_executing_idx, which holds an
-- entry for every job that ran since the last vacuum: a bitmap scan visited the heap for
-- each of them at every claim (the most of a claim's time late in a burst of 10,000 jobs);
-- an index scan marks the dead ones in the index as it finds them, and skips them after.
SET jit = off SET enable_bitmapscan = off AS $$
DECLARE
    v_now timestamptz;
    v_global integer;
    v_ids bigint[];
    v_tag text;
    v_partitioned boolean :=
        coalesce(cardinality(p_fields), 0) + coalesce(cardinality(p_keys), 0) > 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('jobrunner_limit:' || p_queue, 0));
    v_now := clock_timestamp();  -- after the lock: later than every start already recorded
    SELECT coalesce(q.global_limit, p_global_limit) INTO v_global
    FROM jobrunner_queues AS q WHERE q.name = p_queue;
    IF NOT FOUND THEN
        v_global := p_global_limit;
    END IF;
    IF p_rate_allowed IS NOT NULL THEN
        DELETE FROM jobrunner_rate_starts
        WHERE queue = p_queue AND started_at <= v_now - make_interval(secs => p_rate_period_s);
    END IF;

    IF NOT v_partitioned AND p_rate_allowed IS NULL THEN
        -- Only a global limit: the room and the claim in one statement, as the plain claim.
        RETURN QUERY
        UPDATE jobrunner_jobs AS j
        SET state = 'executing',
            attempt = least(j.attempt + 1, 32767),
            attempted_at = v_now,
            attempted_by = array_remove(ARRAY[p_node, p_claim], NULL),
            ahead = false
        WHERE j.id = ANY (ARRAY(
            SELECT l.id FROM jobrunner_jobs AS l
            WHERE l.state = 'available' AND l.queue = p_queue
            ORDER BY l.priority, l.scheduled_at, l.id
            LIMIT greatest(least(p_demand, v_global - (
                SELECT count(*) FROM (
                    SELECT FROM jobrunner_jobs AS e
                    WHERE e.state = 'executing' AND e.queue = p_queue
                    LIMIT v_global) AS x)), 0)
            FOR UPDATE SKIP LOCKED))
        RETURNING j.*;
        RETURN;
    ELSIF v_partitioned THEN
        PERFORM jobrunner_file_partitions(p_queue, p_fields, p_keys);
        v_tag := jobrunner_partition_tag(p_fields, p_keys);
        v_ids := jobrunner_pick_partitioned(
            p_queue, p_demand, v_global, p_rate_allowed, p_fields, p_keys,
            v_tag, left(v_tag, 8) || ';');
    ELSE
        -- One partition under a rate limit: the queue's own order, through the fetch index.
        WITH room AS (
            SELECT least(
                p_demand,
                v_global - (SELECT count(*) FROM (
                                SELECT FROM jobrunner_jobs AS j
                                WHERE j.state = 'executing' AND j.queue = p_queue
                                LIMIT v_global) AS e),
                p_rate_allowed - (SELECT coalesce(sum(s.weight), 0) FROM jobrunner_rate_starts AS s
                                  WHERE s.queue = p_queue AND p_rate_allowed IS NOT NULL)
            ) AS n
        ),
        firsts AS (
            SELECT j.id, sum(jobrunner_weight(j.meta, p_rate_allowed))
                         OVER (ORDER BY j.priority, j.scheduled_at, j.id) AS cum_w
            FROM jobrunner_jobs AS j
            WHERE j.state = 'available' AND j.queue = p_queue
            ORDER BY j.priority, j.scheduled_at, j.id
            LIMIT greatest((SELECT n FROM room), 0)
        )
        SELECT array_agg(f.id) INTO v_ids
        FROM firsts AS f
        WHERE p_rate_allowed IS NULL
           OR f.cum_w <= p_rate_allowed - (SELECT coalesce(sum(s.weight), 0)
                                            FROM jobrunner_rate_starts AS s
                                            WHERE s.queue = p_queue);
    END IF;

    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH claimed AS (
        UPDATE jobrunner_jobs AS j
        SET state = 'executing',
            attempt = least(j.attempt + 1, 32767),
            attempted_at = v_now,
            attempted_by = array_remove(ARRAY[p_node, p_claim], NULL),
            ahead = false
        WHERE j.id = ANY (ARRAY(
            -- by primary key: as `state = 'available'`, the fetch index's predicate, the
            -- planner (with the statistics of an emptier table) scanned that whole index
            SELECT l.id FROM jobrunner_jobs AS l
            WHERE l.id = ANY (v_ids) AND l.state::text = 'available'
            FOR UPDATE SKIP LOCKED
        ))
        RETURNING j.*
    ),
    recorded AS (
        INSERT INTO jobrunner_rate_starts (queue, partition, started_at, weight)
        SELECT p_queue, jobrunner_partition(c.worker, c.args, p_fields, p_keys), v_now,
               jobrunner_weight(c.meta, p_rate_allowed)
        FROM claimed AS c
        WHERE p_rate_allowed IS NOT NULL
    )
    SELECT * FROM claimed;
END;
$$;

-- The ids a partitioned claim takes, best first: each partition with room (fewer than the
-- global limit executing, less than the allowance started in the window) offers its first
-- waiting jobs, as many as its room, through jobrunner_jobs_partition_idx; the claim takes
-- the first job of every partition, then the second, and so on (fair: a burst in one
-- partition never holds back another). Full partitions cost one index probe each.
CREATE FUNCTION jobrunner_pick_partitioned(
    p_queue text, p_demand integer, p_global integer, p_rate_allowed integer,
    p_fields text[], p_keys text[], p_tag text, p_tag_end text
) RETURNS bigint[] LANGUAGE plpgsql STABLE
-- The skip scan must read the partition index in its order: with the statistics of a table
-- that was empty at its last analyze (a burst just inserted), the planner sorted every
-- waiting job of the queue instead, at each of the 100 probes (1.5 s for 10,000 jobs).
-- plpgsql, not sql: its plan is cached for the session instead of made at every call.
SET enable_sort = off AS $$
BEGIN
    RETURN (WITH RECURSIVE parts(pkey) AS (  -- the stored keys, tag included: a skip scan
        (SELECT j.partition_key FROM jobrunner_jobs AS j
         WHERE j.state = 'available' AND j.queue = p_queue
           AND j.partition_key >= p_tag AND j.partition_key < p_tag_end
         ORDER BY j.partition_key LIMIT 1)
        UNION ALL
        SELECT (SELECT j.partition_key FROM jobrunner_jobs AS j
                WHERE j.state = 'available' AND j.queue = p_queue
                  AND j.partition_key > p.pkey AND j.partition_key < p_tag_end
                ORDER BY j.partition_key LIMIT 1)
        FROM parts AS p
        WHERE p.pkey IS NOT NULL
    ),
    running AS (
        SELECT jobrunner_partition(j.worker, j.args, p_fields, p_keys) AS pkey, count(*) AS n
        FROM jobrunner_jobs AS j
        WHERE j.state = 'executing' AND j.queue = p_queue AND p_global IS NOT NULL
        GROUP BY 1
    ),
    started AS (
        SELECT s.partition AS pkey, sum(s.weight) AS w
        FROM jobrunner_rate_starts AS s
        WHERE s.queue = p_queue AND p_rate_allowed IS NOT NULL
        GROUP BY 1
    ),
    open AS (
        SELECT p.pkey,
               least(p_demand, p_global - coalesce(u.n, 0)) AS room_n,
               p_rate_allowed - coalesce(s.w, 0) AS room_w
        FROM parts AS p
        LEFT JOIN running AS u ON u.pkey = substr(p.pkey, 10)
        LEFT JOIN started AS s ON s.pkey = substr(p.pkey, 10)
        WHERE p.pkey IS NOT NULL
          AND (p_global IS NULL OR coalesce(u.n, 0) < p_global)
          AND (p_rate_allowed IS NULL OR coalesce(s.w, 0) < p_rate_allowed)
    ),
    ranked AS (
        SELECT c.id, c.priority, c.scheduled_at, c.rn
        FROM open AS o
        CROSS JOIN LATERAL (
            SELECT f.id, f.priority, f.scheduled_at,
                   row_number() OVER w AS rn,
                   sum(jobrunner_weight(f.meta, p_rate_allowed)) OVER w AS cum_w
            FROM (
                SELECT j.id, j.priority, j.scheduled_at, j.meta
                FROM jobrunner_jobs AS j
                WHERE j.state = 'available' AND j.queue = p_queue
                  AND j.partition_key = o.pkey
                ORDER BY j.priority, j.scheduled_at, j.id
                LIMIT greatest(o.room_n, 0)
            ) AS f
            WINDOW w AS (ORDER BY f.priority, f.scheduled_at, f.id)
        ) AS c
        WHERE o.room_w IS NULL OR c.cum_w <= o.room_w
    )
    SELECT array_agg(r.id)
    FROM (SELECT r.id FROM ranked AS r
          ORDER BY r.rn, r.priority, r.scheduled_at, r.id
          LIMIT p_demand) AS r);
END;
$$;

-- A limited queue's claim and the node's outcomes in one statement: the outcomes first
-- (the slots they free count for the claim), then the claim. Rows: one per outcome this
-- node still owned (acked, only acked_id), then the claimed jobs (not acked, as job).
CREATE FUNCTION jobrunner_ack_claim_limited(
    p_node text, p_ids bigint[], p_attempts int[], p_states text[], p_delays float8[],
    p_errors text[], p_undo boolean[], p_claims text[], p_results text[],
    p_queue text, p_demand integer, p_claim text,
    p_global_limit integer, p_rate_allowed integer, p_rate_period_s float8,
    p_fields text[], p_keys text[]
) RETURNS TABLE (acked boolean, acked_id bigint, job jobrunner_jobs)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF coalesce(cardinality(p_ids), 0) > 0 THEN
        RETURN QUERY
        SELECT true, a.id, NULL::jobrunner_jobs
        FROM jobrunner_ack(p_node, p_ids, p_attempts, p_states, p_delays, p_errors, p_undo,
                           p_claims, p_results) AS a;
    END IF;
    IF p_demand > 0 THEN
        RETURN QUERY
        SELECT false, NULL::bigint, c
        FROM jobrunner_claim_limited(p_queue, p_demand, p_node, p_claim, p_global_limit,
                                     p_rate_allowed, p_rate_period_s, p_fields, p_keys) AS c;
    END IF;
END;
$$;
