-- jobrunner schema, version 2: which transaction issued each control command.
-- A starting node reads the persisted queue state and a snapshot in one statement; it then
-- applies exactly the commands that snapshot did not see, so none is lost or applied twice.

ALTER TABLE jobrunner_control
    ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();

CREATE INDEX jobrunner_control_created_idx ON jobrunner_control (created_at);
