-- no parameters. The database's clock: every node computes cron slots from it.
SELECT now() AS now
