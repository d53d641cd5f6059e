-- $1 queue, $2 demand (how many), $3 node name, $4 claim id (null: none), $5 how many of
-- them start now (null: all): the rest are claimed ahead of a free slot (`ahead`), held by
-- the node and started as its slots free up.
-- attempted_by is [node, claim]: if the reply is lost after the commit, the node finds the
-- jobs this claim took (claimed_jobs.sql) instead of leaving them executing for ever.
-- The claimed rows are found again by primary key (= ANY of the locked ids), whatever the
-- plan: joined to a CTE, a generic plan (cached while the table was small) hashed a scan
-- of the whole table.
-- The picked ids, in the queue's order, are one array: a row takes `ahead` from its place in it.
WITH picked AS MATERIALIZED (
    SELECT ARRAY(
        SELECT id
        FROM jobrunner_jobs
        WHERE state = 'available' AND queue = $1
        ORDER BY priority, scheduled_at, id
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    ) AS ids
)
UPDATE jobrunner_jobs AS j
SET state = 'executing',
    attempt = least(j.attempt + 1, 32767),  -- smallint: a failure there discards
    attempted_at = now(),
    attempted_by = array_remove(ARRAY[$3::text, $4::text], NULL),
    ahead = coalesce(array_position(p.ids, j.id) > $5::int, false)
FROM picked AS p
WHERE j.id = ANY (p.ids)
RETURNING j.id, 'executing' AS state, j.queue, j.worker, j.args::text AS args, j.meta::text AS meta,
          j.tags, j.errors::text AS errors, j.attempt, j.max_attempts, j.priority, j.inserted_at,
          least(j.scheduled_at, '9999-12-31 23:59:59.999999+00') AS scheduled_at, j.attempted_at, j.completed_at, j.discarded_at, j.cancelled_at,
          j.attempted_by, j.unique_key, j.ahead
