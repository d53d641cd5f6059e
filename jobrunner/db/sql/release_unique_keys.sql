-- $1 unique_keys text[] (null: not unique), $2 unique_states text[] (array literals of
-- states), $3 unique_periods float8[] (seconds, null: for ever), as in insert_jobs.sql.
-- Before unique jobs are inserted in the caller's transaction, the keys that the insert would
-- release (held past the new job's period, or out of its states) are released here, in a
-- statement of its own that commits at once. Released in the caller's transaction, an
-- executing job's row would stay locked until that transaction ends, and the job's outcome
-- would wait for it; insert_jobs.sql then leaves executing jobs alone.
UPDATE jobrunner_jobs AS j
SET unique_key = NULL
FROM unnest($1::text[], $2::text[], $3::float8[]) AS k(unique_key, states, period)
WHERE k.unique_key IS NOT NULL
  AND j.unique_key = k.unique_key
  AND (NOT (j.state = ANY (k.states::jobrunner_job_state[]))
       OR j.inserted_at <= now() - make_interval(secs => k.period))
