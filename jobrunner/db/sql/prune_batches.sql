-- $1 minimum age seconds, $2 batch size. Deletes one bounded batch of batch rows none of
-- whose jobs is left (a batch's callbacks are jobs of no batch: they do not keep it), inserted
-- more than $1 seconds ago; rows another transaction holds (a job of the batch counting
-- itself off) are skipped. Each check is one probe of the batch index (migration 0009).
-- Returns how many went.
WITH doomed AS (
    SELECT b.id
    FROM jobrunner_batches AS b
    WHERE b.inserted_at < now() - make_interval(secs => $1)
      AND NOT EXISTS (SELECT FROM jobrunner_jobs AS j WHERE j.batch_id = b.id)
    ORDER BY b.id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
),
gone AS (
    DELETE FROM jobrunner_batches AS b
    USING doomed
    WHERE b.id = doomed.id
    RETURNING b.id
)
SELECT count(*)::int AS n FROM gone
