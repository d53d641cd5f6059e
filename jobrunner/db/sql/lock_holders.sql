-- no parameters. The other sessions holding a lock on a jobrunner table: what a TRUNCATE
-- waits for (a test's transaction still open, say).
SELECT a.pid, a.state, a.application_name, a.xact_start, left(a.query, 200) AS query
FROM pg_stat_activity a
WHERE a.pid <> pg_backend_pid()
  AND a.pid IN (SELECT l.pid
                FROM pg_locks l
                JOIN pg_class c ON c.oid = l.relation
                WHERE l.granted AND c.relname LIKE 'jobrunner\_%')
ORDER BY a.xact_start NULLS LAST
