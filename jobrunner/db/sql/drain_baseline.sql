-- $1 queues text[], $2 states text[]. The jobs a drain starts with: id and the attempt
-- they had before the drain ran them (an executing job's attempt is already counted).
SELECT id, CASE WHEN state = 'executing' THEN attempt - 1 ELSE attempt END AS attempt,
       now() AS now,
       (SELECT coalesce(max(id), 0) FROM jobrunner_jobs) AS max_id
FROM jobrunner_jobs
WHERE queue = ANY($1::text[]) AND state::text = ANY($2::text[])
UNION ALL
SELECT NULL, NULL, now(), (SELECT coalesce(max(id), 0) FROM jobrunner_jobs)
ORDER BY 1 NULLS LAST
