-- $1 node name. A session advisory lock on the name, held by the running process on a
-- connection of its own: a second live process with the same name cannot take it, and a
-- process that died released it with its session. The class id spells "jrnd".
SELECT pg_try_advisory_lock(1785884260, hashtext($1)) AS locked
