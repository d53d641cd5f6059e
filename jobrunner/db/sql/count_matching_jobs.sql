-- $1-$8 the job filter: states text[], queue, worker, tags text[] (all of them), args jsonb
-- (containment), inserted after, inserted before, args text (a substring of the args' JSON)
-- (each null: any).
-- $9 states text[] the action leaves alone. How many jobs a bulk action would change now.
SELECT count(*) AS n
FROM jobrunner_jobs j
WHERE NOT (j.state::text = ANY ($9::text[]))
  AND ($1::text[] IS NULL OR j.state::text = ANY ($1::text[]))
  AND ($2::text IS NULL OR j.queue = $2::text)
  AND ($3::text IS NULL OR j.worker = $3::text)
  AND ($4::text[] IS NULL OR j.tags @> $4::text[])
  AND ($5::jsonb IS NULL OR j.args @> $5::jsonb)
  AND ($6::timestamptz IS NULL OR j.inserted_at > $6::timestamptz)
  AND ($7::timestamptz IS NULL OR j.inserted_at < $7::timestamptz)
  AND ($8::text IS NULL OR strpos(j.args::text, $8::text) > 0)
