-- no parameters. Empties every jobrunner table but the migrations record, restarting ids:
-- test isolation for the pytest plugin. Tables are found by name so later migrations' are too,
-- in the schema that holds jobrunner_jobs (found through regclass, so in any schema).
DO $$
DECLARE
    names text;
BEGIN
    SELECT string_agg(c.oid::regclass::text, ', ')
    INTO names
    FROM pg_class AS c
    WHERE c.relnamespace = (SELECT t.relnamespace FROM pg_class AS t
                            WHERE t.oid = 'jobrunner_jobs'::regclass)
      AND c.relkind IN ('r', 'p')
      AND c.relname LIKE 'jobrunner\_%'
      AND c.oid <> 'jobrunner_migrations'::regclass;
    IF names IS NOT NULL THEN
        EXECUTE 'TRUNCATE ' || names || ' RESTART IDENTITY CASCADE';
    END IF;
END
$$
