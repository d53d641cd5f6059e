-- jobrunner schema, version 9: the jobs of a batch, found by index.
-- The pruner deletes a batch's row once none of its jobs is left, which it checks for each
-- candidate batch: without an index, each check would scan the jobs table. Partial, as the
-- workflow and chain indexes: a job of no batch has no entry in it, so plain jobs pay
-- nothing. Built once at upgrade (a scan of the jobs table, writes to it waiting meanwhile).
CREATE INDEX jobrunner_jobs_batch_idx ON jobrunner_jobs (batch_id) WHERE batch_id IS NOT NULL;
