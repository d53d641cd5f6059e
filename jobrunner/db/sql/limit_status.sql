-- $1 queue, $2 rate period seconds (null: no rate limit), $3 partition fields text[],
-- $4 partition keys text[], $5 how many partitions to list.
-- A limited queue's use: the persisted global limit, jobs executing (not those claimed ahead:
-- they wait for a slot), the weight started in the rate window, and the busiest partitions
-- (executing, then waiting, then started); for a queue with a global limit alone, the slots
-- each live node holds (migration 12).
WITH parts AS (
    SELECT jobrunner_partition(j.worker, j.args, $3::text[], $4::text[]) AS pkey,
           count(*) FILTER (WHERE j.state = 'executing' AND NOT j.ahead) AS executing,
           count(*) FILTER (WHERE j.state = 'available') AS available
    FROM jobrunner_jobs AS j
    WHERE j.queue = $1 AND j.state IN ('executing', 'available')
    GROUP BY 1
),
window_starts AS (
    SELECT s.partition AS pkey, sum(s.weight)::bigint AS started
    FROM jobrunner_rate_starts AS s
    WHERE s.queue = $1 AND $2::float8 IS NOT NULL
      AND s.started_at > clock_timestamp() - make_interval(secs => $2::float8)
    GROUP BY 1
),
merged AS (
    SELECT coalesce(p.pkey, w.pkey) AS pkey, coalesce(p.executing, 0) AS executing,
           coalesce(p.available, 0) AS available, coalesce(w.started, 0) AS started
    FROM parts AS p FULL JOIN window_starts AS w ON w.pkey = p.pkey
)
SELECT (SELECT q.global_limit FROM jobrunner_queues AS q WHERE q.name = $1) AS global_override,
       (SELECT coalesce(sum(executing), 0) FROM merged)::bigint AS executing,
       (SELECT coalesce(sum(started), 0) FROM merged)::bigint AS started,
       (SELECT count(*) FROM merged)::bigint AS partitions,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                    'partition', b.pkey, 'executing', b.executing,
                    'available', b.available, 'started', b.started))
                 FROM (SELECT * FROM merged
                       WHERE pkey <> ''
                       ORDER BY executing DESC, available DESC, started DESC, pkey
                       LIMIT $5) AS b), '[]')::text AS busiest,
       coalesce((SELECT jsonb_object_agg(s.node, s.held ORDER BY s.node)
                 FROM jobrunner_queue_slots AS s
                 JOIN jobrunner_nodes AS n ON n.name = s.node
                 WHERE s.queue = $1 AND s.held > 0), '{}')::text AS slots
