-- no parameters. Empties every jobrunner table but the migrations record, restarting ids:
-- test isolation for the pytest plugin. Tables are found by name so later migrations' are too.
DO $$
DECLARE
    names text;
BEGIN
    SELECT string_agg(format('%I.%I', schemaname, tablename), ', ')
    INTO names
    FROM pg_tables
    WHERE schemaname = current_schema()
      AND tablename LIKE 'jobrunner\_%'
      AND tablename <> 'jobrunner_migrations';
    IF names IS NOT NULL THEN
        EXECUTE 'TRUNCATE ' || names || ' RESTART IDENTITY CASCADE';
    END IF;
END
$$
