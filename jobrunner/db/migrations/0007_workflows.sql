-- jobrunner schema, version 7: recorded results, workflows, batches and chains.

-- What a worker recorded with `Record(value)` when its job completed (at most 1 MB of JSON,
-- checked by the worker's process before the ack writes it).
ALTER TABLE jobrunner_jobs ADD COLUMN result jsonb;

-- A job may wait on others (its dependencies): the steps of a workflow, the jobs of a chain.
-- A waiting job is 'scheduled' at 9999-01-01 (never staged) with deps_left > 0;
-- jobrunner_job_deps holds one row per dependency not yet finished. When a dependency
-- finishes, the statement that finished it (an ack, a cancel) runs the triggers below, which
-- count it off its dependents: the one that reaches 0 becomes available in that same
-- transaction, so no poller is needed and none is missed. Plain jobs leave every new column
-- null and pay only the row triggers' WHEN checks and one statement trigger call per
-- statement.
ALTER TABLE jobrunner_jobs
    ADD COLUMN workflow_id bigint,
    ADD COLUMN step text,
    ADD COLUMN deps text[],
    ADD COLUMN deps_left integer,
    ADD COLUMN batch_id bigint,
    ADD COLUMN chain text;

CREATE TABLE jobrunner_workflows (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 255),
    inserted_at  timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX jobrunner_jobs_workflow_step_idx
    ON jobrunner_jobs (workflow_id, step)
    WHERE workflow_id IS NOT NULL;

-- The last unfinished job of a chain, found at each insert into the chain.
CREATE INDEX jobrunner_jobs_chain_idx
    ON jobrunner_jobs (chain, id)
    WHERE chain IS NOT NULL AND state IN ('available', 'scheduled', 'executing', 'retryable');

CREATE TABLE jobrunner_job_deps (
    dep_id            bigint NOT NULL,
    job_id            bigint NOT NULL,
    ignore_cancelled  boolean NOT NULL DEFAULT false,
    ignore_discarded  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (dep_id, job_id)
);

CREATE INDEX jobrunner_job_deps_job_idx ON jobrunner_job_deps (job_id);

-- Counts finished dependencies p_ids off their dependents, and goes on down the graph: a
-- dependent whose dependency completed (or was cancelled or discarded, and it ignores that)
-- counts it off, and becomes available when none is left; one whose dependency was
-- cancelled or discarded (or deleted) and does not ignore it is cancelled, which in turn
-- settles its own dependents. Iterative, not recursive: a long chain of cancellations needs
-- no deep trigger nesting.
--
-- The dependents are updated from arrays in id order (so that two transactions lock shared
-- dependents in the same order, and the planner knows how many there are: estimated from a
-- CTE, a fan-out of 2,000 got a nested loop over the whole table for each of them).
-- Concurrency: two dependencies of one job finishing at once in two transactions both update
-- the dependent's row; the second waits for the first's row lock and recomputes deps_left
-- from the committed row, so exactly one of them sees it reach 0.
CREATE FUNCTION jobrunner_settle_dependents(p_ids bigint[]) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_ids bigint[] := p_ids;
    v_jobs bigint[];
    v_counts integer[];
    v_reasons text[];
    v_next bigint[];
    v_queues text[];
BEGIN
    WHILE coalesce(cardinality(v_ids), 0) > 0 LOOP
        WITH deps AS MATERIALIZED (
            SELECT d.id, d.step, d.state::text AS state
            FROM jobrunner_jobs AS d
            WHERE d.id = ANY (v_ids)
        ),
        gone AS (
            DELETE FROM jobrunner_job_deps AS e
            WHERE e.dep_id = ANY (v_ids)
            RETURNING e.dep_id, e.job_id, e.ignore_cancelled, e.ignore_discarded
        ),
        judged AS (  -- a deleted dependency counts as cancelled
            SELECT g.job_id, g.dep_id, d.step, coalesce(d.state, 'deleted') AS state,
                   CASE coalesce(d.state, 'cancelled')
                       WHEN 'completed' THEN true
                       WHEN 'cancelled' THEN g.ignore_cancelled
                       WHEN 'discarded' THEN g.ignore_discarded
                       ELSE false END AS ok
            FROM gone AS g
            LEFT JOIN deps AS d ON d.id = g.dep_id
        ),
        tally AS (
            SELECT j.job_id, count(*)::int AS n,
                   (array_agg(format('dependency %s was %s',
                                     coalesce(quote_literal(j.step), 'job ' || j.dep_id), j.state)
                              ORDER BY j.dep_id) FILTER (WHERE NOT j.ok))[1] AS reason
            FROM judged AS j
            GROUP BY j.job_id
        )
        SELECT array_agg(t.job_id ORDER BY t.job_id), array_agg(t.n ORDER BY t.job_id),
               array_agg(t.reason ORDER BY t.job_id)
        INTO v_jobs, v_counts, v_reasons
        FROM tally AS t;

        WITH changed AS (
            UPDATE jobrunner_jobs AS j
            SET deps_left = CASE WHEN t.reason IS NULL THEN j.deps_left - t.n ELSE 0 END,
                state = CASE WHEN t.reason IS NOT NULL THEN 'cancelled'
                             WHEN j.deps_left - t.n <= 0 THEN 'available'
                             ELSE j.state END::jobrunner_job_state,
                scheduled_at = CASE WHEN t.reason IS NULL AND j.deps_left - t.n <= 0 THEN now()
                                    ELSE j.scheduled_at END,
                cancelled_at = CASE WHEN t.reason IS NULL THEN j.cancelled_at ELSE now() END,
                errors = CASE WHEN t.reason IS NULL THEN j.errors
                              ELSE j.errors || jsonb_build_array(jsonb_build_object(
                                  'attempt', j.attempt, 'at', now(), 'error', t.reason,
                                  'traceback', NULL)) END
            FROM unnest(v_jobs, v_counts, v_reasons) AS t(job_id, n, reason)
            WHERE j.id = t.job_id AND j.state = 'scheduled' AND j.deps_left > 0
            RETURNING j.id, j.state, j.queue
        )
        SELECT coalesce(array_agg(c.id) FILTER (WHERE c.state = 'cancelled'), '{}'),
               coalesce(array_agg(DISTINCT c.queue) FILTER (WHERE c.state = 'available'), '{}')
        INTO v_next, v_queues
        FROM changed AS c;
        PERFORM pg_notify('jobrunner_insert', q.queue) FROM unnest(v_queues) AS q(queue);
        v_ids := v_next;
    END LOOP;
END;
$$;

-- A dependency that finished (or was deleted unfinished) is noted by a row trigger, and the
-- statement's notes are settled at once by a statement trigger: one pass over the edges and
-- one update of each dependent per statement, however many of its dependencies the
-- statement finished (an ack of 2,000 steps of a fan-out counts all of them off the fan-in
-- step in one update, not in 2,000). The notes live in a transaction-local setting, so an
-- error drops them with the rest of the transaction.
CREATE FUNCTION jobrunner_note_finished() RETURNS trigger
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM set_config(
        'jobrunner.finished',
        coalesce(current_setting('jobrunner.finished', true), '')
            || CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END || ',',
        true);
    RETURN NULL;
END;
$$;

CREATE FUNCTION jobrunner_settle_noted() RETURNS trigger
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_noted text := current_setting('jobrunner.finished', true);
BEGIN
    IF coalesce(v_noted, '') = '' THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('jobrunner.finished', '', true);
    PERFORM jobrunner_settle_dependents(string_to_array(rtrim(v_noted, ','), ',')::bigint[]);
    RETURN NULL;
END;
$$;

-- Only at the top level: the cancellations that jobrunner_settle_dependents makes are settled
-- by its own loop.
CREATE TRIGGER jobrunner_jobs_dependency_finished
    AFTER UPDATE OF state ON jobrunner_jobs
    FOR EACH ROW
    WHEN ((NEW.workflow_id IS NOT NULL OR NEW.chain IS NOT NULL)
          AND NEW.state IN ('completed', 'cancelled', 'discarded')
          AND OLD.state NOT IN ('completed', 'cancelled', 'discarded')
          AND pg_trigger_depth() = 0)
    EXECUTE FUNCTION jobrunner_note_finished();

-- A dependency deleted before it finished counts as cancelled.
CREATE TRIGGER jobrunner_jobs_dependency_deleted
    AFTER DELETE ON jobrunner_jobs
    FOR EACH ROW
    WHEN ((OLD.workflow_id IS NOT NULL OR OLD.chain IS NOT NULL)
          AND OLD.state NOT IN ('completed', 'cancelled', 'discarded')
          AND pg_trigger_depth() = 0)
    EXECUTE FUNCTION jobrunner_note_finished();

-- After the row triggers of the same statement (PostgreSQL queues a statement's row events
-- before its statement event). For every top-level statement that updates or deletes jobs:
-- a plain one finds no note and returns at once.
CREATE TRIGGER jobrunner_jobs_settle_updated
    AFTER UPDATE ON jobrunner_jobs
    FOR EACH STATEMENT
    WHEN (pg_trigger_depth() = 0)
    EXECUTE FUNCTION jobrunner_settle_noted();

CREATE TRIGGER jobrunner_jobs_settle_deleted
    AFTER DELETE ON jobrunner_jobs
    FOR EACH STATEMENT
    WHEN (pg_trigger_depth() = 0)
    EXECUTE FUNCTION jobrunner_settle_noted();

-- A waiting job never becomes available while it waits (a retry by hand, say): it stays as
-- it was, and runs when its dependencies let it.
CREATE FUNCTION jobrunner_keep_waiting() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.state := OLD.state;
    NEW.scheduled_at := OLD.scheduled_at;
    RETURN NEW;
END;
$$;

CREATE TRIGGER jobrunner_jobs_keep_waiting
    BEFORE UPDATE OF state ON jobrunner_jobs
    FOR EACH ROW
    WHEN (OLD.deps_left > 0 AND NEW.deps_left > 0 AND OLD.state = 'scheduled'
          AND NEW.state = 'available')
    EXECUTE FUNCTION jobrunner_keep_waiting();

-- Inserts the steps of a workflow: a new one named p_name, or (p_workflow_id, or the workflow
-- of job p_of_job) a running one. One row per step: p_steps (names), p_workers, p_queues,
-- p_args and p_metas (json), p_tags (json arrays), p_priorities, p_max_attempts,
-- p_scheduled_ats (null: now + p_schedule_ins seconds, null: now), p_deps (json arrays of
-- step names, distinct), p_ignore_cancelled, p_ignore_discarded. p_existing: the steps
-- already in the workflow that new steps depend on (they are locked, so that none finishes
-- unseen while this transaction inserts its dependents). Errors with SQLSTATE JRW01 name
-- what is wrong. Returns the steps in input order.
CREATE FUNCTION jobrunner_insert_workflow(
    p_workflow_id bigint, p_name text, p_of_job bigint,
    p_steps text[], p_workers text[], p_queues text[], p_args text[], p_metas text[],
    p_tags text[], p_priorities integer[], p_max_attempts integer[],
    p_scheduled_ats timestamptz[], p_schedule_ins float8[],
    p_deps text[], p_ignore_cancelled boolean[], p_ignore_discarded boolean[],
    p_existing text[]
) RETURNS TABLE (workflow_id bigint, step text, id bigint, state text,
                 inserted_at timestamptz, scheduled_at timestamptz)
LANGUAGE plpgsql VOLATILE
-- A custom plan folds the step arrays into the plan as constants, and inserting 8,000 steps
-- took 1.8 s instead of 0.3 s.
SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    v_wf bigint := p_workflow_id;
    v_names text;
    v_ids bigint[];
    v_finished bigint[];
BEGIN
    IF p_of_job IS NOT NULL THEN
        SELECT j.workflow_id INTO v_wf FROM jobrunner_jobs AS j WHERE j.id = p_of_job;
        IF v_wf IS NULL THEN
            RAISE EXCEPTION 'job % is not a step of a workflow', p_of_job USING ERRCODE = 'JRW01';
        END IF;
    ELSIF v_wf IS NOT NULL THEN
        PERFORM FROM jobrunner_workflows AS w WHERE w.id = v_wf;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no workflow with id %', v_wf USING ERRCODE = 'JRW01';
        END IF;
    ELSE
        INSERT INTO jobrunner_workflows (name) VALUES (p_name) RETURNING id INTO v_wf;
    END IF;

    IF p_workflow_id IS NOT NULL OR p_of_job IS NOT NULL THEN
        SELECT string_agg(quote_literal(j.step), ', ' ORDER BY j.step) INTO v_names
        FROM jobrunner_jobs AS j
        WHERE j.workflow_id = v_wf AND j.step = ANY (p_steps);
        IF v_names IS NOT NULL THEN
            RAISE EXCEPTION 'workflow % already has the step(s) %', v_wf, v_names
                USING ERRCODE = 'JRW01';
        END IF;
        PERFORM FROM jobrunner_jobs AS j
        WHERE j.workflow_id = v_wf AND j.step = ANY (p_existing)
        ORDER BY j.id
        FOR SHARE;
        SELECT string_agg(quote_literal(x.name), ', ' ORDER BY x.name) INTO v_names
        FROM unnest(p_existing) AS x(name)
        WHERE NOT EXISTS (SELECT FROM jobrunner_jobs AS j
                          WHERE j.workflow_id = v_wf AND j.step = x.name);
        IF v_names IS NOT NULL THEN
            RAISE EXCEPTION 'workflow % has no step(s) %', v_wf, v_names USING ERRCODE = 'JRW01';
        END IF;
    END IF;

    WITH s AS (
        SELECT u.*, ARRAY(SELECT jsonb_array_elements_text(u.deps::jsonb)) AS dep_names,
               coalesce(u.scheduled_at,
                        now() + make_interval(secs => coalesce(u.schedule_in, 0))) AS run_at
        FROM unnest(p_steps, p_workers, p_queues, p_args, p_metas, p_tags, p_priorities,
                    p_max_attempts, p_scheduled_ats, p_schedule_ins, p_deps,
                    p_ignore_cancelled, p_ignore_discarded) WITH ORDINALITY
             AS u(step, worker, queue, args, meta, tags, priority, max_attempts, scheduled_at,
                  schedule_in, deps, ignore_cancelled, ignore_discarded, ord)
    ),
    ins AS (
        INSERT INTO jobrunner_jobs (state, worker, queue, args, meta, tags, priority,
                                    max_attempts, scheduled_at, workflow_id, step, deps,
                                    deps_left)
        SELECT CASE WHEN cardinality(s.dep_names) > 0 OR s.run_at > now() THEN 'scheduled'
                    ELSE 'available' END::jobrunner_job_state,
               s.worker, s.queue, s.args::jsonb, s.meta::jsonb,
               ARRAY(SELECT jsonb_array_elements_text(s.tags::jsonb)),
               s.priority, s.max_attempts,
               CASE WHEN cardinality(s.dep_names) > 0 THEN '9999-01-01 00:00:00+00'
                    ELSE s.run_at END,
               v_wf, s.step, s.dep_names, cardinality(s.dep_names)
        FROM s
        ORDER BY s.ord
        RETURNING id, step, state, queue
    ),
    named AS (
        SELECT i.id, i.step FROM ins AS i
        UNION ALL
        SELECT j.id, j.step FROM jobrunner_jobs AS j
        WHERE j.workflow_id = v_wf AND j.step = ANY (p_existing)
    ),
    edges AS (
        INSERT INTO jobrunner_job_deps (dep_id, job_id, ignore_cancelled, ignore_discarded)
        SELECT dep.id, me.id, s.ignore_cancelled, s.ignore_discarded
        FROM s
        JOIN ins AS me ON me.step = s.step
        CROSS JOIN LATERAL unnest(s.dep_names) AS d(name)
        JOIN named AS dep ON dep.step = d.name
    ),
    woken AS (
        SELECT count(pg_notify('jobrunner_insert', q.queue)) AS n
        FROM (SELECT DISTINCT i.queue FROM ins AS i WHERE i.state = 'available') AS q
    )
    SELECT array_agg(i.id ORDER BY i.id) INTO v_ids FROM ins AS i CROSS JOIN woken;

    -- Existing dependencies that already finished: settled now, as if they just had.
    SELECT array_agg(j.id) INTO v_finished
    FROM jobrunner_jobs AS j
    WHERE j.workflow_id = v_wf AND j.step = ANY (p_existing)
      AND j.state IN ('completed', 'cancelled', 'discarded');
    PERFORM jobrunner_settle_dependents(v_finished);

    RETURN QUERY
    SELECT v_wf, j.step, j.id, j.state::text, j.inserted_at, j.scheduled_at
    FROM unnest(v_ids) AS x(id)
    JOIN jobrunner_jobs AS j ON j.id = x.id
    ORDER BY j.id;
END;
$$;

-- Inserts jobs at the end of chain p_chain, in order (columns as in jobrunner_insert_workflow):
-- each waits for the one before it to finish, whatever its outcome. The chain's advisory
-- lock orders inserts into one chain; the chain's last unfinished job is locked, so that it
-- cannot finish unseen while its follower is inserted.
CREATE FUNCTION jobrunner_insert_chain(
    p_chain text, p_workers text[], p_queues text[], p_args text[], p_metas text[],
    p_tags text[], p_priorities integer[], p_max_attempts integer[],
    p_scheduled_ats timestamptz[], p_schedule_ins float8[]
) RETURNS TABLE (id bigint, state text, inserted_at timestamptz, scheduled_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_prev bigint;
    v_id bigint;
    v_ids bigint[] := '{}';
    v_run_at timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('jobrunner_chain:' || p_chain, 0));
    SELECT j.id INTO v_prev
    FROM jobrunner_jobs AS j
    WHERE j.chain = p_chain AND j.state IN ('available', 'scheduled', 'executing', 'retryable')
    ORDER BY j.id DESC
    LIMIT 1
    FOR SHARE;
    FOR i IN 1 .. cardinality(p_args) LOOP
        v_run_at := coalesce(p_scheduled_ats[i],
                             now() + make_interval(secs => coalesce(p_schedule_ins[i], 0)));
        INSERT INTO jobrunner_jobs (state, worker, queue, args, meta, tags, priority,
                                    max_attempts, scheduled_at, chain, deps_left)
        VALUES (CASE WHEN v_prev IS NOT NULL OR v_run_at > now() THEN 'scheduled'
                     ELSE 'available' END::jobrunner_job_state,
                p_workers[i], p_queues[i], p_args[i]::jsonb, p_metas[i]::jsonb,
                ARRAY(SELECT jsonb_array_elements_text(p_tags[i]::jsonb)),
                p_priorities[i], p_max_attempts[i],
                CASE WHEN v_prev IS NULL THEN v_run_at ELSE '9999-01-01 00:00:00+00' END,
                p_chain, CASE WHEN v_prev IS NULL THEN NULL ELSE 1 END)
        RETURNING id INTO v_id;
        IF v_prev IS NOT NULL THEN
            INSERT INTO jobrunner_job_deps (dep_id, job_id, ignore_cancelled, ignore_discarded)
            VALUES (v_prev, v_id, true, true);
        ELSIF v_run_at <= now() THEN
            PERFORM pg_notify('jobrunner_insert', p_queues[i]);
        END IF;
        v_prev := v_id;
        v_ids := v_ids || v_id;
    END LOOP;
    RETURN QUERY
    SELECT j.id, j.state::text, j.inserted_at, j.scheduled_at
    FROM jobrunner_jobs AS j
    WHERE j.id = ANY (v_ids)
    ORDER BY j.id;
END;
$$;

-- A batch: jobs inserted together, and callback jobs inserted once each when a condition
-- first holds, checked when the batch's last unfinished job finishes: 'completed' (every job
-- completed), 'discarded' (every job finished, one or more discarded), 'exhausted' (every
-- job finished). A job that runs again (a retry by hand) counts as unfinished until it ends.
CREATE TABLE jobrunner_batches (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    total        integer NOT NULL,
    unfinished   integer NOT NULL,
    completed    integer NOT NULL DEFAULT 0,
    cancelled    integer NOT NULL DEFAULT 0,
    discarded    integer NOT NULL DEFAULT 0,
    callbacks    jsonb NOT NULL DEFAULT '{}',  -- condition: {worker, queue, args, meta, ...}
    fired        text[] NOT NULL DEFAULT '{}',  -- the conditions whose callback was inserted
    inserted_at  timestamptz NOT NULL DEFAULT now()
);

-- Counts a batch job in or out of `unfinished`. Every count of one batch updates its row, so
-- they run one after another (the row lock), each on the count the one before committed:
-- exactly one sees `unfinished` reach 0, and `fired`, read and written under the same lock,
-- inserts each callback once however many nodes finish the last jobs at the same instant.
CREATE FUNCTION jobrunner_batch_progress() RETURNS trigger
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_batch bigint;
    v_state text;
    v_sign integer;
    b jobrunner_batches;
    v_due text[];
BEGIN
    IF TG_OP = 'DELETE' THEN
        v_batch := OLD.batch_id; v_state := 'cancelled'; v_sign := 1;
    ELSIF NEW.state IN ('completed', 'cancelled', 'discarded') THEN
        v_batch := NEW.batch_id; v_state := NEW.state::text; v_sign := 1;
    ELSE  -- a finished job runs again
        v_batch := NEW.batch_id; v_state := OLD.state::text; v_sign := -1;
    END IF;
    UPDATE jobrunner_batches AS bt
    SET unfinished = bt.unfinished - v_sign,
        completed = bt.completed + CASE WHEN v_state = 'completed' THEN v_sign ELSE 0 END,
        cancelled = bt.cancelled + CASE WHEN v_state = 'cancelled' THEN v_sign ELSE 0 END,
        discarded = bt.discarded + CASE WHEN v_state = 'discarded' THEN v_sign ELSE 0 END
    WHERE bt.id = v_batch
    RETURNING bt.* INTO b;
    IF NOT FOUND OR b.unfinished > 0 THEN
        RETURN NULL;
    END IF;
    SELECT array_agg(c.cond) INTO v_due
    FROM unnest(ARRAY['completed', 'discarded', 'exhausted']) AS c(cond)
    WHERE b.callbacks ? c.cond AND NOT c.cond = ANY (b.fired)
      AND CASE c.cond WHEN 'completed' THEN b.completed = b.total
                      WHEN 'discarded' THEN b.discarded > 0
                      ELSE true END;
    IF v_due IS NULL THEN
        RETURN NULL;
    END IF;
    UPDATE jobrunner_batches AS bt SET fired = bt.fired || v_due WHERE bt.id = b.id;
    WITH ins AS (
        INSERT INTO jobrunner_jobs (worker, queue, args, meta, tags, priority, max_attempts)
        SELECT cb ->> 'worker', cb ->> 'queue', cb -> 'args',
               (cb -> 'meta') || jsonb_build_object('batch_id', b.id, 'batch_callback', c.cond),
               ARRAY(SELECT jsonb_array_elements_text(cb -> 'tags')),
               (cb ->> 'priority')::int, (cb ->> 'max_attempts')::int
        FROM unnest(v_due) AS c(cond)
        CROSS JOIN LATERAL (SELECT b.callbacks -> c.cond AS cb) AS x
        RETURNING queue
    )
    SELECT count(pg_notify('jobrunner_insert', q.queue)) INTO v_sign
    FROM (SELECT DISTINCT i.queue FROM ins AS i) AS q;
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobrunner_jobs_batch_progress
    AFTER UPDATE OF state ON jobrunner_jobs
    FOR EACH ROW
    WHEN (NEW.batch_id IS NOT NULL
          AND (OLD.state IN ('completed', 'cancelled', 'discarded'))
              <> (NEW.state IN ('completed', 'cancelled', 'discarded')))
    EXECUTE FUNCTION jobrunner_batch_progress();

CREATE TRIGGER jobrunner_jobs_batch_deleted
    AFTER DELETE ON jobrunner_jobs
    FOR EACH ROW
    WHEN (OLD.batch_id IS NOT NULL AND OLD.state NOT IN ('completed', 'cancelled', 'discarded'))
    EXECUTE FUNCTION jobrunner_batch_progress();

-- Inserts a batch's jobs (columns as in jobrunner_insert_workflow) and its callbacks
-- (p_callbacks: condition -> job as json); returns the batch id and the jobs in input order.
CREATE FUNCTION jobrunner_insert_batch(
    p_callbacks jsonb, p_workers text[], p_queues text[], p_args text[], p_metas text[],
    p_tags text[], p_priorities integer[], p_max_attempts integer[],
    p_scheduled_ats timestamptz[], p_schedule_ins float8[]
) RETURNS TABLE (batch_id bigint, id bigint, state text, inserted_at timestamptz,
                 scheduled_at timestamptz)
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan AS $$  -- as jobrunner_insert_workflow
#variable_conflict use_column
DECLARE
    v_batch bigint;
BEGIN
    INSERT INTO jobrunner_batches (total, unfinished, callbacks)
    VALUES (cardinality(p_args), cardinality(p_args), p_callbacks)
    RETURNING id INTO v_batch;
    RETURN QUERY
    WITH ins AS (
        INSERT INTO jobrunner_jobs (state, worker, queue, args, meta, tags, priority,
                                    max_attempts, scheduled_at, batch_id)
        SELECT CASE WHEN u.run_at > now() THEN 'scheduled' ELSE 'available'
               END::jobrunner_job_state,
               u.worker, u.queue, u.args::jsonb, u.meta::jsonb,
               ARRAY(SELECT jsonb_array_elements_text(u.tags::jsonb)),
               u.priority, u.max_attempts, u.run_at, v_batch
        FROM (SELECT t.*, coalesce(t.scheduled_at, now() + make_interval(
                                       secs => coalesce(t.schedule_in, 0))) AS run_at
              FROM unnest(p_workers, p_queues, p_args, p_metas, p_tags, p_priorities,
                          p_max_attempts, p_scheduled_ats, p_schedule_ins) WITH ORDINALITY
                   AS t(worker, queue, args, meta, tags, priority, max_attempts,
                        scheduled_at, schedule_in, ord)
              ORDER BY t.ord) AS u
        RETURNING id, state, queue, inserted_at, scheduled_at
    ),
    woken AS (
        SELECT count(pg_notify('jobrunner_insert', q.queue)) AS n
        FROM (SELECT DISTINCT i.queue FROM ins AS i WHERE i.state = 'available') AS q
    )
    SELECT v_batch, i.id, i.state::text, i.inserted_at, i.scheduled_at
    FROM ins AS i CROSS JOIN woken
    ORDER BY i.id;
END;
$$;
