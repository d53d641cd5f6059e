-- jobrunner schema, version 5: cluster-wide queue limits, enforced when jobs are claimed.
-- A queue with a global limit, a rate limit or partitions claims through
-- jobrunner_claim_limited(); every other queue keeps the plain claim (fetch_jobs.sql).

-- A global limit set with `jobrunner scale QUEUE --global N`; it wins over the nodes' config.
ALTER TABLE jobrunner_queues
    ADD COLUMN global_limit integer CHECK (global_limit IS NULL OR global_limit >= 1);

-- One row per job started in a rate-limited queue, kept for one period: a rate limit counts
-- the jobs started in the window, whatever became of them (retried, pruned) since.
CREATE TABLE jobrunner_rate_starts (
    queue       text NOT NULL,
    partition   text NOT NULL,
    started_at  timestamptz NOT NULL,
    weight      integer NOT NULL
);

CREATE INDEX jobrunner_rate_starts_idx ON jobrunner_rate_starts (queue, started_at);

-- The partition a job falls in, as text: a JSON array of the worker (if a partition field),
-- the whole args (if a field, without keys), then the values of up to 8 args keys. A missing
-- key is null: every job lacking it shares the partition where it is null. No fields and no
-- keys: the whole queue is one partition, ''. STABLE like the functions it calls, so that
-- the planner inlines it (a call per row would cost ten times more).
CREATE FUNCTION jobrunner_partition(worker text, args jsonb, fields text[], keys text[])
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN coalesce(cardinality(fields), 0) + coalesce(cardinality(keys), 0) = 0 THEN ''
        ELSE jsonb_build_array(
            CASE WHEN 'worker' = ANY (fields) THEN to_jsonb(worker) END,
            CASE WHEN 'args' = ANY (fields) AND coalesce(cardinality(keys), 0) = 0 THEN args END,
            args -> keys[1], args -> keys[2], args -> keys[3], args -> keys[4],
            args -> keys[5], args -> keys[6], args -> keys[7], args -> keys[8]
        )::text COLLATE "C"
    END
$$;

-- What a job counts against a rate limit: meta.weight (a number >= 1, at most the allowance),
-- else 1.
CREATE FUNCTION jobrunner_weight(meta jsonb, allowed integer)
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(meta -> 'weight') = 'number'
                THEN greatest(1, least(ceil((meta ->> 'weight')::numeric), coalesce(allowed, 1)))::int
                ELSE 1 END
$$;

-- Claims up to p_demand available jobs of p_queue under its global limit (jobs executing,
-- per partition) and rate limit (weight of the jobs started in the last p_rate_period_s
-- seconds, per partition).
--
-- Every claim of a limited queue first takes the queue's advisory lock, held until commit,
-- so claims of one queue run one after another. The function is volatile: each statement
-- below reads a fresh snapshot, taken after the lock, that holds every earlier claim's
-- commit. A limit can only be exceeded by a claim that does not see an earlier one, so no
-- interleaving of nodes exceeds it. Acks and rescues only lower the counts: one not yet
-- seen only delays a claim.
--
-- Fairness: each partition's jobs are ranked in the queue's order (priority, scheduled_at,
-- id) and the claim takes the first job of every partition under its limits, then the
-- second, and so on: a burst in one partition never holds back another.
CREATE FUNCTION jobrunner_claim_limited(
    p_queue text, p_demand integer, p_node text, p_claim text,
    p_global_limit integer, p_rate_allowed integer, p_rate_period_s float8,
    p_fields text[], p_keys text[]
) RETURNS SETOF jobrunner_jobs LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_now timestamptz;
    v_global integer;
    v_ids bigint[];
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

    IF v_partitioned THEN
        WITH running AS (
            SELECT jobrunner_partition(j.worker, j.args, p_fields, p_keys) AS pkey, count(*) AS n
            FROM jobrunner_jobs AS j
            WHERE j.state = 'executing' AND j.queue = p_queue AND v_global IS NOT NULL
            GROUP BY 1
        ),
        started AS (
            SELECT s.partition AS pkey, sum(s.weight) AS w
            FROM jobrunner_rate_starts AS s
            WHERE s.queue = p_queue AND p_rate_allowed IS NOT NULL
            GROUP BY 1
        ),
        full_partitions AS (  -- no room: their waiting jobs are not even ranked
            SELECT u.pkey FROM running AS u WHERE u.n >= v_global
            UNION
            SELECT s.pkey FROM started AS s WHERE s.w >= p_rate_allowed
        ),
        ranked AS (
            SELECT c.id, c.pkey, c.priority, c.scheduled_at,
                   row_number() OVER w AS rn,
                   sum(jobrunner_weight(c.meta, p_rate_allowed)) OVER w AS cum_w
            FROM (
                SELECT j.id, j.priority, j.scheduled_at, j.meta,
                       jobrunner_partition(j.worker, j.args, p_fields, p_keys) AS pkey
                FROM jobrunner_jobs AS j
                WHERE j.state = 'available' AND j.queue = p_queue
            ) AS c
            WHERE c.pkey NOT IN (SELECT f.pkey FROM full_partitions AS f)
            WINDOW w AS (PARTITION BY c.pkey ORDER BY c.priority, c.scheduled_at, c.id)
        )
        SELECT array_agg(f.id) INTO v_ids
        FROM (
            SELECT r.id
            FROM ranked AS r
            LEFT JOIN running AS u ON u.pkey = r.pkey
            LEFT JOIN started AS s ON s.pkey = r.pkey
            WHERE (v_global IS NULL OR r.rn <= v_global - coalesce(u.n, 0))
              AND (p_rate_allowed IS NULL OR r.cum_w <= p_rate_allowed - coalesce(s.w, 0))
            ORDER BY r.rn, r.priority, r.scheduled_at, r.id
            LIMIT p_demand
        ) AS f;
    ELSE
        -- One partition: the queue's own order, through the fetch index.
        WITH room AS (
            SELECT least(
                p_demand,
                v_global - (SELECT count(*) FROM jobrunner_jobs AS j
                            WHERE j.state = 'executing' AND j.queue = p_queue),
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
            attempt = j.attempt + 1,
            attempted_at = v_now,
            attempted_by = array_remove(ARRAY[p_node, p_claim], NULL)
        WHERE j.id = ANY (ARRAY(
            SELECT l.id FROM jobrunner_jobs AS l
            WHERE l.id = ANY (v_ids) AND l.state = 'available'
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

-- Seconds until the oldest start in a rate-limited queue's window leaves it (null: none).
CREATE FUNCTION jobrunner_rate_wait(p_queue text, p_rate_period_s float8)
RETURNS float8 LANGUAGE sql STABLE AS $$
    SELECT extract(epoch FROM min(started_at) + make_interval(secs => p_rate_period_s)
                              - clock_timestamp())::float8
    FROM jobrunner_rate_starts
    WHERE queue = p_queue
$$;
