-- jobrunner schema, version 8: jobs enqueued from SQL by any writer.
-- jobrunner_insert_job() inserts one job and NOTIFYs the daemons inside the caller's
-- transaction, so other services, psql sessions and PostgreSQL triggers enqueue as the
-- clients do: the job commits or rolls back with the caller's rows.

-- The unique key the clients give a trigger's job for one record: the digest of the
-- fingerprint of Unique(period=None, fields=["worker", "args"], states="incomplete") over
-- args {"pk": pk}, i.e. '{"args":{"pk":<pk>},"worker":"<worker>"}'. The same text as the
-- clients' for integer keys and ASCII text keys and worker names.
CREATE FUNCTION jobrunner_trigger_key(worker text, pk jsonb)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 'u:' || encode(sha256(convert_to(
        '{"args":{"pk":' || $2::text || '},"worker":' || to_jsonb($1)::text || '}', 'UTF8'
    )), 'hex')
$$;

-- One job: available now (NOTIFYing its queue) or at `scheduled_at`. With a `unique_key`,
-- a job already holding that key wins and NULL is returned (the key is held while the job
-- is in `unique_states`, by default the incomplete ones). Otherwise the new job's id.
CREATE FUNCTION jobrunner_insert_job(
    worker text,
    args jsonb DEFAULT '{}',
    queue text DEFAULT 'default',
    priority integer DEFAULT 0,
    max_attempts integer DEFAULT 20,
    scheduled_at timestamptz DEFAULT NULL,
    unique_key text DEFAULT NULL,
    unique_states jobrunner_job_state[] DEFAULT NULL,
    tags text[] DEFAULT '{}',
    meta jsonb DEFAULT '{}'
) RETURNS bigint LANGUAGE sql AS $$
    WITH ins AS (
        INSERT INTO jobrunner_jobs AS j (state, worker, args, queue, priority, max_attempts,
                                         scheduled_at, unique_key, unique_states, tags, meta)
        SELECT CASE WHEN $6 > now() THEN 'scheduled' ELSE 'available'
               END::jobrunner_job_state,
               $1, $2, $3, $4, $5, coalesce($6, now()), $7,
               CASE WHEN $7 IS NOT NULL
                    THEN coalesce($8, '{available,scheduled,executing,retryable}') END,
               $9, $10
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
        RETURNING j.id, j.state, j.queue
    ),
    woken AS (
        SELECT count(pg_notify('jobrunner_insert', ins.queue)) AS n
        FROM ins WHERE ins.state = 'available'
    )
    SELECT ins.id FROM ins, woken
$$;
