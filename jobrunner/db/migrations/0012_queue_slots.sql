-- jobrunner schema, version 12: a queue whose only cluster-wide limit is a global limit
-- counts it in slots that nodes hold, so that a node may claim jobs ahead of its free slots
-- (as a queue without limits does) without those jobs counting against the limit.
--
-- A node holds `held` slots of a queue and runs at most that many of its jobs at once; the
-- jobs it has claimed ahead wait in its buffer for a slot, without one. Under the queue's
-- advisory lock (the one every limited claim takes) the slots held by nodes, plus the
-- executing jobs of nodes that hold no slots row (nodes claiming by count, drains, a node
-- whose row went), never exceed the global limit. A node asks for slots only when it could
-- use more (jobs waiting in its buffer), gives back what it no longer needs, and at every
-- such statement learns its fair share when other nodes wait for slots: its claims
-- otherwise go through the plain claim, no lock taken. Rows of nodes that are gone (their
-- lease expired and the row of jobrunner_nodes went, or they stopped) are dropped by the
-- next node that asks: their jobs, if any are left executing, count as loose jobs instead.
CREATE TABLE jobrunner_queue_slots (
    queue   text NOT NULL,
    node    text NOT NULL,
    held    integer NOT NULL CHECK (held >= 0),
    wanted  integer NOT NULL CHECK (wanted >= 0),
    PRIMARY KEY (queue, node)
);

-- How much of a queue's global limit is taken: the slots held by live nodes (a row of
-- jobrunner_nodes), plus the executing jobs of nodes without such slots (counted up to the
-- limit). Called under the queue's advisory lock.
CREATE FUNCTION jobrunner_limit_used(p_queue text, p_global integer)
RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT (coalesce((SELECT sum(s.held) FROM jobrunner_queue_slots AS s
                      WHERE s.queue = p_queue
                        AND EXISTS (SELECT FROM jobrunner_nodes AS n WHERE n.name = s.node)),
                     0)
            + (SELECT count(*) FROM (
                   SELECT FROM jobrunner_jobs AS e
                   WHERE e.state = 'executing' AND e.queue = p_queue
                     AND NOT EXISTS (SELECT FROM jobrunner_queue_slots AS s
                                     JOIN jobrunner_nodes AS n ON n.name = s.node
                                     WHERE s.queue = p_queue AND s.node = e.attempted_by[1])
                   LIMIT p_global) AS x))::integer
$$;

-- A node's slots of a queue: it keeps `p_keep` (at least what it runs now: it runs no more
-- than that until the reply) and would use `p_need`; it gets as many as the limit leaves,
-- never fewer than `p_keep`. Returns the slots it holds now and, when other nodes wait for
-- slots (or the limit was lowered under what is held), its fair share: it gives back what
-- is over it as its jobs end. A node that gives slots back while others wait wakes them.
CREATE FUNCTION jobrunner_take_slots(
    p_queue text, p_node text, p_global_limit integer, p_keep integer, p_need integer
) RETURNS TABLE (held integer, cap integer) LANGUAGE plpgsql VOLATILE
SET jit = off SET enable_bitmapscan = off AS $$
#variable_conflict use_column
DECLARE
    v_global integer;
    v_before integer;
    v_held integer;
    v_wanting integer;
    v_rank integer;
    v_starved boolean;
    v_share integer;
    v_used integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('jobrunner_limit:' || p_queue, 0));
    SELECT coalesce(q.global_limit, p_global_limit) INTO v_global
    FROM jobrunner_queues AS q WHERE q.name = p_queue;
    IF NOT FOUND THEN
        v_global := p_global_limit;
    END IF;
    DELETE FROM jobrunner_queue_slots AS s
    WHERE s.queue = p_queue
      AND NOT EXISTS (SELECT FROM jobrunner_nodes AS n WHERE n.name = s.node);
    SELECT s.held INTO v_before FROM jobrunner_queue_slots AS s
    WHERE s.queue = p_queue AND s.node = p_node;
    INSERT INTO jobrunner_queue_slots AS s (queue, node, held, wanted)
    VALUES (p_queue, p_node, p_keep, p_need)
    ON CONFLICT (queue, node) DO UPDATE SET held = excluded.held, wanted = excluded.wanted;
    SELECT count(*) FILTER (WHERE s.wanted > 0),
           count(*) FILTER (WHERE s.wanted > 0 AND s.node < p_node),
           coalesce(bool_or(s.wanted > s.held AND s.node <> p_node), false)
    INTO v_wanting, v_rank, v_starved
    FROM jobrunner_queue_slots AS s WHERE s.queue = p_queue;
    -- the limit shared among the nodes that want slots (the first ones by name get the rest)
    v_share := CASE WHEN v_wanting > 0
                    THEN v_global / v_wanting + (v_rank < v_global % v_wanting)::int END;
    -- what is left once the others' slots and loose jobs are counted, and ours kept; no more
    -- than our share while others wait
    v_used := jobrunner_limit_used(p_queue, v_global);  -- ours counted as p_keep
    v_held := greatest(p_keep, least(
        p_need,
        p_keep + v_global - v_used,
        CASE WHEN v_starved THEN v_share END));
    UPDATE jobrunner_queue_slots AS s SET held = v_held
    WHERE s.queue = p_queue AND s.node = p_node;
    IF v_starved AND v_held < coalesce(v_before, 0) THEN
        PERFORM pg_notify('jobrunner_insert', p_queue);
    END IF;
    held := v_held;
    cap := CASE WHEN v_starved OR v_used - p_keep + v_held > v_global THEN v_share END;
    RETURN NEXT;
END;
$$;

-- A slot-counted queue's claim when its slots change, with the node's outcomes: the
-- outcomes first, then up to `p_demand` jobs claimed (the first `p_started` start now, the
-- others ahead, as in ack_and_fetch_jobs.sql; a slot counts for a job only once it starts),
-- then the node's slots for what it holds (`p_have`, jobs running or waiting in its buffer)
-- and what it claimed, up to its own limit. Rows: the acks this node still owned (acked,
-- only acked_id), the claimed jobs (not acked, as job), last the slots (acked null).
CREATE FUNCTION jobrunner_ack_claim_slots(
    p_node text, p_ids bigint[], p_attempts int[], p_states text[], p_delays float8[],
    p_errors text[], p_undo boolean[], p_claims text[], p_results text[],
    p_queue text, p_demand integer, p_claim text, p_started integer,
    p_global_limit integer, p_limit integer, p_have integer, p_keep integer
) RETURNS TABLE (acked boolean, acked_id bigint, job jobrunner_jobs, held integer, cap integer)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_claimed integer := 0;
    v_slots record;
BEGIN
    IF coalesce(cardinality(p_ids), 0) > 0 THEN
        RETURN QUERY
        SELECT true, a.id, NULL::jobrunner_jobs, NULL::integer, NULL::integer
        FROM jobrunner_ack(p_node, p_ids, p_attempts, p_states, p_delays, p_errors, p_undo,
                           p_claims, p_results) AS a;
    END IF;
    IF p_demand > 0 THEN
        RETURN QUERY
        WITH picked AS MATERIALIZED (
            SELECT ARRAY(
                SELECT l.id FROM jobrunner_jobs AS l
                WHERE l.state = 'available' AND l.queue = p_queue
                ORDER BY l.priority, l.scheduled_at, l.id
                LIMIT p_demand
                FOR UPDATE SKIP LOCKED) AS ids
        ),
        claimed AS (
            UPDATE jobrunner_jobs AS j
            SET state = 'executing',
                attempt = least(j.attempt + 1, 32767),
                attempted_at = now(),
                attempted_by = array_remove(ARRAY[p_node, p_claim], NULL),
                ahead = coalesce(array_position(p.ids, j.id) > p_started, false)
            FROM picked AS p
            WHERE j.id = ANY (p.ids)
            RETURNING j.*
        )
        SELECT false, NULL::bigint, c::jobrunner_jobs, NULL::integer, NULL::integer
        FROM claimed AS c;
        GET DIAGNOSTICS v_claimed = ROW_COUNT;
    END IF;
    SELECT * INTO v_slots
    FROM jobrunner_take_slots(p_queue, p_node, p_global_limit, p_keep,
                              least(p_limit, p_have + v_claimed)) AS t;
    RETURN QUERY SELECT NULL::boolean, NULL::bigint, NULL::jobrunner_jobs, v_slots.held,
                        v_slots.cap;
END;
$$;

-- The limited claim of migration 6, counting the slots that nodes hold (above) with the
-- executing jobs of the nodes that hold none.
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
    -- This node claims by counting now: slots it held (its limits changed live) go back.
    DELETE FROM jobrunner_queue_slots AS s WHERE s.queue = p_queue AND s.node = p_node;
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
            LIMIT greatest(least(p_demand, v_global - jobrunner_limit_used(p_queue, v_global)), 0)
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
                v_global - jobrunner_limit_used(p_queue, v_global),
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
