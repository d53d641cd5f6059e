-- jobrunner schema, version 3: no index on (worker, state).
-- Every insert wrote an entry into it, and so did every change of state (a state change is
-- never a HOT update: the partial indexes' conditions name the state). It served only the
-- operator's listings filtered by worker, which now scan the table (newest first, up to
-- their limit) instead.

DROP INDEX jobrunner_jobs_worker_idx;
