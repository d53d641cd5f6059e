-- $1-$8 the job filter: states text[], queue, worker, tags text[] (all of them), args jsonb
-- (containment), inserted after, inserted before, args text (a substring of the args' JSON)
-- (each null: any).
-- $9 the last id of the previous batch (0 at first), $10 the batch size. One bounded batch
-- in id order: the jobs scanned are re-checked under their row locks, so a job that changed
-- meanwhile is changed only if it still matches; the caller goes on after last_id until
-- fewer than $10 were scanned.
-- Every matching job that is not executing is deleted.
WITH scanned AS (
    SELECT j.id
    FROM jobrunner_jobs j
    WHERE j.id > $9
      AND j.state <> 'executing'
      AND ($1::text[] IS NULL OR j.state::text = ANY ($1::text[]))
      AND ($2::text IS NULL OR j.queue = $2::text)
      AND ($3::text IS NULL OR j.worker = $3::text)
      AND ($4::text[] IS NULL OR j.tags @> $4::text[])
      AND ($5::jsonb IS NULL OR j.args @> $5::jsonb)
      AND ($6::timestamptz IS NULL OR j.inserted_at > $6::timestamptz)
      AND ($7::timestamptz IS NULL OR j.inserted_at < $7::timestamptz)
      AND ($8::text IS NULL OR strpos(j.args::text, $8::text) > 0)
    ORDER BY j.id
    LIMIT $10
),
changed AS (
    DELETE FROM jobrunner_jobs AS j
    USING scanned s
    WHERE j.id = s.id
      AND j.state <> 'executing'
      AND ($1::text[] IS NULL OR j.state::text = ANY ($1::text[]))
      AND ($2::text IS NULL OR j.queue = $2::text)
      AND ($3::text IS NULL OR j.worker = $3::text)
      AND ($4::text[] IS NULL OR j.tags @> $4::text[])
      AND ($5::jsonb IS NULL OR j.args @> $5::jsonb)
      AND ($6::timestamptz IS NULL OR j.inserted_at > $6::timestamptz)
      AND ($7::timestamptz IS NULL OR j.inserted_at < $7::timestamptz)
      AND ($8::text IS NULL OR strpos(j.args::text, $8::text) > 0)
    RETURNING j.id
)
SELECT (SELECT count(*) FROM scanned) AS scanned, (SELECT max(id) FROM scanned) AS last_id,
       ARRAY(SELECT id FROM changed ORDER BY id) AS ids
