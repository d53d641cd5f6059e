-- jobrunner schema, version 11: autovacuum keeps the jobs table flat whatever its history.
-- Every job leaves dead rows behind it (each change of state, the pruner's delete), a few
-- thousand a second under load. PostgreSQL's default waits for a fifth of the table to be
-- dead before it vacuums: with a history of ten million finished jobs kept for a month,
-- two million dead rows, ten minutes at 1,000 jobs/s, the table growing all the while. A
-- fixed threshold instead: vacuumed once 10,000 rows are dead (at most once a naptime,
-- a minute by default), each run cheap (the history's pages are all-visible and skipped).
ALTER TABLE jobrunner_jobs SET (
    autovacuum_vacuum_scale_factor = 0.0,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_insert_scale_factor = 0.0,
    autovacuum_vacuum_insert_threshold = 100000
);
