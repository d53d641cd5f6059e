-- $1 states text[], $2 queue, $3 worker, $4 tag, $5 args substring, $6 args jsonb
-- (containment), $7 inserted at or after, $8 inserted before: each null for any.
-- $9 ids bigint[] (null: every matching job). Matching jobs that are not executing become
-- available now, with one more attempt if they have none left; their queues are woken.
WITH retried AS (
    UPDATE jobrunner_jobs
    SET state = 'available',
        scheduled_at = now(),
        max_attempts = greatest(max_attempts, attempt + 1),
        completed_at = NULL, discarded_at = NULL, cancelled_at = NULL
    WHERE ($1::text[] IS NULL OR state::text = ANY($1::text[]))
  AND ($2::text IS NULL OR queue = $2)
  AND ($3::text IS NULL OR worker = $3)
  AND ($4::text IS NULL OR $4 = ANY(tags))
  AND ($5::text IS NULL OR strpos(args::text, $5) > 0)
  AND ($6::jsonb IS NULL OR args @> $6::jsonb)
  AND ($7::timestamptz IS NULL OR inserted_at >= $7)
  AND ($8::timestamptz IS NULL OR inserted_at < $8)
      AND ($9::bigint[] IS NULL OR id = ANY($9::bigint[]))
      AND state <> 'executing'
    RETURNING id, queue
),
woken AS (
    SELECT count(pg_notify('jobrunner_insert', q.queue)) AS n
    FROM (SELECT DISTINCT queue FROM retried) AS q
)
SELECT retried.id FROM retried, woken ORDER BY retried.id
