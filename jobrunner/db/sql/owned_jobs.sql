-- $1 ids bigint[], $2 claims text[] (null: a claim without an id), $3 node name. The runs
-- among these that this node still holds: a job cancelled or rescued meanwhile, or claimed
-- again by a later run, is missing, and the run's task is stopped.
SELECT r.id, r.claim
FROM unnest($1::bigint[], $2::text[]) AS r(id, claim)
JOIN jobrunner_jobs AS j ON j.id = r.id
WHERE j.state = 'executing' AND j.attempted_by[1] = $3
  AND j.attempted_by[2] IS NOT DISTINCT FROM r.claim
