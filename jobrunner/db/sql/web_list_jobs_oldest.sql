-- $1 states text[], $2 queue, $3 worker, $4 tag, $5 args substring, $6 args jsonb
-- (containment), $7 inserted at or after, $8 inserted before: each null for any.
-- $9 after id (null: from the oldest), $10 limit. Oldest first, a page after the cursor:
-- a walk up the primary key that stops at the limit, however many rows the table holds.
SELECT id, state::text AS state, queue, worker, args::text AS args, meta::text AS meta, tags, errors::text AS errors, attempt, max_attempts, priority, inserted_at, scheduled_at, attempted_at, completed_at, discarded_at, cancelled_at, attempted_by, unique_key
FROM jobrunner_jobs
WHERE ($1::text[] IS NULL OR state::text = ANY($1::text[]))
  AND ($2::text IS NULL OR queue = $2)
  AND ($3::text IS NULL OR worker = $3)
  AND ($4::text IS NULL OR $4 = ANY(tags))
  AND ($5::text IS NULL OR strpos(args::text, $5) > 0)
  AND ($6::jsonb IS NULL OR args @> $6::jsonb)
  AND ($7::timestamptz IS NULL OR inserted_at >= $7)
  AND ($8::timestamptz IS NULL OR inserted_at < $8)
  AND ($9::bigint IS NULL OR id > $9)
ORDER BY id
LIMIT $10
