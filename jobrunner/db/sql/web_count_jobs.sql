-- $1 states text[], $2 queue, $3 worker, $4 tag, $5 args substring, $6 args jsonb
-- (containment), $7 inserted at or after, $8 inserted before: each null for any.
-- How many jobs match, counted up to $9 (a bulk action's confirmation shows it).
SELECT count(*) AS n FROM (
    SELECT 1 FROM jobrunner_jobs
    WHERE ($1::text[] IS NULL OR state::text = ANY($1::text[]))
  AND ($2::text IS NULL OR queue = $2)
  AND ($3::text IS NULL OR worker = $3)
  AND ($4::text IS NULL OR $4 = ANY(tags))
  AND ($5::text IS NULL OR strpos(args::text, $5) > 0)
  AND ($6::jsonb IS NULL OR args @> $6::jsonb)
  AND ($7::timestamptz IS NULL OR inserted_at >= $7)
  AND ($8::timestamptz IS NULL OR inserted_at < $8)
    LIMIT $9
) AS matching
