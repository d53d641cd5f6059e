-- The jobs table's indexes, each as a name REINDEX takes (qualified outside the search
-- path), and whether it is invalid: the leftover copy (`..._ccnew`) of a concurrent rebuild
-- that failed, which only costs writes until it is dropped.
SELECT format('%s', i.indexrelid::regclass) AS name,
       NOT i.indisvalid AS invalid,
       c.relname LIKE '%\_ccnew%' AS leftover
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indexrelid
WHERE i.indrelid = 'jobrunner_jobs'::regclass
ORDER BY c.relname
