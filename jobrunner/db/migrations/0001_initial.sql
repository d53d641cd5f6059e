-- jobrunner schema, version 1: jobs, nodes, queues, control, leadership, cron.

CREATE TYPE jobrunner_job_state AS ENUM (
    'available', 'scheduled', 'executing', 'retryable', 'completed', 'discarded', 'cancelled'
);

CREATE TABLE jobrunner_jobs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    state         jobrunner_job_state NOT NULL DEFAULT 'available',
    queue         text NOT NULL DEFAULT 'default',
    worker        text NOT NULL,
    args          jsonb NOT NULL DEFAULT '{}',
    meta          jsonb NOT NULL DEFAULT '{}',
    tags          text[] NOT NULL DEFAULT '{}',
    errors        jsonb NOT NULL DEFAULT '[]',
    attempt       smallint NOT NULL DEFAULT 0,
    max_attempts  smallint NOT NULL DEFAULT 20,
    priority      smallint NOT NULL DEFAULT 0,
    inserted_at   timestamptz NOT NULL DEFAULT now(),
    scheduled_at  timestamptz NOT NULL DEFAULT now(),
    attempted_at  timestamptz,
    completed_at  timestamptz,
    discarded_at  timestamptz,
    cancelled_at  timestamptz,
    attempted_by  text[],
    unique_key    text,
    unique_states jobrunner_job_state[],
    CONSTRAINT jobrunner_jobs_priority_range CHECK (priority BETWEEN 0 AND 9),
    CONSTRAINT jobrunner_jobs_attempts_positive CHECK (max_attempts > 0 AND attempt >= 0),
    CONSTRAINT jobrunner_jobs_queue_length CHECK (char_length(queue) BETWEEN 1 AND 128),
    CONSTRAINT jobrunner_jobs_worker_length CHECK (char_length(worker) BETWEEN 1 AND 255),
    CONSTRAINT jobrunner_jobs_args_object CHECK (jsonb_typeof(args) = 'object'),
    CONSTRAINT jobrunner_jobs_meta_object CHECK (jsonb_typeof(meta) = 'object')
);

-- The hot path: the next available jobs of one queue, in priority then time order.
-- Partial, so it stays small however many finished rows the table holds.
CREATE INDEX jobrunner_jobs_fetch_idx
    ON jobrunner_jobs (queue, priority, scheduled_at, id)
    WHERE state = 'available';

CREATE INDEX jobrunner_jobs_stage_idx
    ON jobrunner_jobs (scheduled_at)
    WHERE state IN ('scheduled', 'retryable');

CREATE INDEX jobrunner_jobs_executing_idx
    ON jobrunner_jobs ((attempted_by[1]))
    WHERE state = 'executing';

CREATE INDEX jobrunner_jobs_prune_idx
    ON jobrunner_jobs (state, coalesce(completed_at, cancelled_at, discarded_at))
    WHERE state IN ('completed', 'cancelled', 'discarded');

CREATE INDEX jobrunner_jobs_worker_idx ON jobrunner_jobs (worker, state);

CREATE UNIQUE INDEX jobrunner_jobs_unique_idx
    ON jobrunner_jobs (unique_key)
    WHERE unique_key IS NOT NULL;

-- A unique job stops blocking duplicates once it leaves the states it is unique in.
CREATE FUNCTION jobrunner_release_unique() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.unique_key := NULL;
    RETURN NEW;
END;
$$;

CREATE TRIGGER jobrunner_jobs_release_unique
    BEFORE UPDATE OF state ON jobrunner_jobs
    FOR EACH ROW
    WHEN (NEW.unique_key IS NOT NULL AND NOT (NEW.state = ANY (NEW.unique_states)))
    EXECUTE FUNCTION jobrunner_release_unique();

CREATE TABLE jobrunner_nodes (
    name          text PRIMARY KEY,
    host          text NOT NULL,
    pid           integer NOT NULL,
    queues        jsonb NOT NULL DEFAULT '{}',
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);

CREATE TABLE jobrunner_queues (
    name        text PRIMARY KEY,
    paused      boolean NOT NULL DEFAULT false,
    "limit"     integer CHECK ("limit" IS NULL OR "limit" >= 1),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE jobrunner_control (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    command     text NOT NULL,
    queue       text,
    node        text,
    payload     jsonb NOT NULL DEFAULT '{}',
    issued_by   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE jobrunner_control_applied (
    control_id  bigint NOT NULL REFERENCES jobrunner_control (id) ON DELETE CASCADE,
    node        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    result      jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (control_id, node)
);

CREATE TABLE jobrunner_leader (
    name        text PRIMARY KEY,
    node        text NOT NULL,
    elected_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);

CREATE TABLE jobrunner_cron (
    name        text PRIMARY KEY,
    last_slot   timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
