-- jobrunner schema, version 10: a queue's rate limit changed live, persisted.
-- `jobrunner scale QUEUE --rate N/PERIOD` writes it in the transaction of its control
-- command: the live nodes apply the command, and a node that starts later reads it with the
-- rest of the queue's persisted state, so every node claims under it. It wins over the
-- nodes' configured rate limit; null (the default, and after a reset): their configuration's.
ALTER TABLE jobrunner_queues
    ADD COLUMN rate_allowed integer CHECK (rate_allowed IS NULL OR rate_allowed >= 1),
    ADD COLUMN rate_period_s double precision
        CHECK (rate_period_s IS NULL OR rate_period_s > 0),
    ADD CONSTRAINT jobrunner_queues_rate_limit_whole
        CHECK ((rate_allowed IS NULL) = (rate_period_s IS NULL));
