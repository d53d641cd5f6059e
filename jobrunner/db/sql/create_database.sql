-- $1 database name. Returns the CREATE DATABASE statement for it, the name quoted by
-- PostgreSQL (a database cannot be created with a parameter); _queries runs it.
SELECT format('CREATE DATABASE %I', $1::text) AS statement
