-- jobrunner schema, version 7: recorded results.

-- What a worker recorded with `Record(value)` when its job completed (at most 1 MB of JSON,
-- checked by the worker's process before the ack writes it).
ALTER TABLE jobrunner_jobs ADD COLUMN result jsonb;
