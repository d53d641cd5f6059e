-- No parameters. What tells one database from another: its name, and its server's port and
-- start time. A caller's connection must reach the client's database, where its daemons look.
SELECT current_database() AS name, inet_server_port() AS port,
       pg_postmaster_start_time() AS started
