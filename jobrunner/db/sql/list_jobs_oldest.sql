-- $1-$8 the job filter: states text[], queue, worker, tags text[] (all of them), args jsonb
-- (containment), inserted after, inserted before, args text (a substring of the args' JSON)
-- (each null: any).
-- $9 after this id (null: from the oldest), $10 limit. Oldest first: a keyset page is a
-- walk up the primary key from the cursor that stops at the limit.
SELECT j.id, j.state::text AS state, j.queue, j.worker, j.args::text AS args, j.meta::text AS meta, j.tags, j.errors::text AS errors, j.attempt, j.max_attempts, j.priority, j.inserted_at, least(j.scheduled_at, '9999-12-31 23:59:59.999999+00') AS scheduled_at, j.attempted_at, j.completed_at, j.discarded_at, j.cancelled_at, j.attempted_by, j.unique_key
FROM jobrunner_jobs j
WHERE ($1::text[] IS NULL OR j.state::text = ANY ($1::text[]))
  AND ($2::text IS NULL OR j.queue = $2::text)
  AND ($3::text IS NULL OR j.worker = $3::text)
  AND ($4::text[] IS NULL OR j.tags @> $4::text[])
  AND ($5::jsonb IS NULL OR j.args @> $5::jsonb)
  AND ($6::timestamptz IS NULL OR j.inserted_at > $6::timestamptz)
  AND ($7::timestamptz IS NULL OR j.inserted_at < $7::timestamptz)
  AND ($8::text IS NULL OR strpos(j.args::text, $8::text) > 0)
  AND ($9::bigint IS NULL OR j.id > $9::bigint)
ORDER BY j.id
LIMIT $10
