-- jobrunner schema, version 4: a queue's persisted pause may be unset (NULL).
-- A queue configured `paused = true` starts paused unless a resume was persisted for it; a
-- row written by a scale alone, which decided nothing about pausing, must not read as one.

ALTER TABLE jobrunner_queues ALTER COLUMN paused DROP NOT NULL;
ALTER TABLE jobrunner_queues ALTER COLUMN paused DROP DEFAULT;
