-- $1 database name. Returns the DROP DATABASE statement for it, the name quoted by
-- PostgreSQL, closing the connections still open on it; _queries runs it.
SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', $1::text) AS statement
