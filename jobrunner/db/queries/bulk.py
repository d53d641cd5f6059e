"""The job filter's statements: listings and bulk actions (cancel, retry, delete) of the
jobs it matches, in bounded batches."""

from __future__ import annotations

from dataclasses import dataclass

from jobrunner.core.job import Job
from jobrunner.core.job_filter import JobFilter
from jobrunner.db.queries.jobs import Conn, _fetch, _sql, readable

LIST_JOBS = _sql("list_jobs")
LIST_JOBS_OLDEST = _sql("list_jobs_oldest")
COUNT_MATCHING_JOBS = _sql("count_matching_jobs")
CANCEL_JOBS = _sql("cancel_jobs")
RETRY_JOBS = _sql("retry_jobs")
DELETE_JOBS = _sql("delete_jobs")
DELETE_JOB = _sql("delete_job")


async def list_jobs(
    conn: Conn, job_filter: JobFilter, *, limit: int, before_id: int | None = None
) -> list[Job]:
    """Jobs matching the filter, newest first, below `before_id` if given (a keyset page:
    a walk down the primary key that stops at `limit`)."""
    rows = await _fetch(conn, LIST_JOBS, *job_filter.params(), before_id, limit)
    return [readable(row) for row in rows]


async def list_jobs_oldest(
    conn: Conn, job_filter: JobFilter, *, limit: int, after_id: int | None = None
) -> list[Job]:
    """Jobs matching the filter, oldest first, above `after_id` if given (a keyset page)."""
    rows = await _fetch(conn, LIST_JOBS_OLDEST, *job_filter.params(), after_id, limit)
    return [readable(row) for row in rows]


# What each bulk action leaves alone, whatever the filter says.
BULK_SPARED = {
    "cancel": ("completed", "discarded", "cancelled"),
    "retry": ("executing",),
    "delete": ("executing",),
}


async def count_matching_jobs(conn: Conn, job_filter: JobFilter, *, action: str) -> int:
    """How many jobs `action` (cancel, retry, delete) would change now."""
    rows = await _fetch(conn, COUNT_MATCHING_JOBS, *job_filter.params(), list(BULK_SPARED[action]))
    return int(rows[0]["n"])


@dataclass(frozen=True, slots=True)
class BulkBatch:
    """One batch of a bulk action: how many jobs it scanned, the last id, the ids changed."""

    scanned: int
    last_id: int
    ids: list[int]


async def _bulk_batch(
    conn: Conn, query: str, job_filter: JobFilter, after_id: int, batch_size: int
) -> BulkBatch:
    row = (await _fetch(conn, query, *job_filter.params(), after_id, batch_size))[0]
    return BulkBatch(int(row["scanned"]), row["last_id"] or after_id, list(row["ids"]))


async def cancel_jobs(
    conn: Conn, job_filter: JobFilter, *, after_id: int, batch_size: int
) -> BulkBatch:
    """Cancel one batch of the unfinished matching jobs after `after_id`."""
    return await _bulk_batch(conn, CANCEL_JOBS, job_filter, after_id, batch_size)


async def retry_jobs(
    conn: Conn, job_filter: JobFilter, *, after_id: int, batch_size: int
) -> BulkBatch:
    """Make one batch of the matching jobs after `after_id` (not executing) available now."""
    return await _bulk_batch(conn, RETRY_JOBS, job_filter, after_id, batch_size)


async def delete_jobs(
    conn: Conn, job_filter: JobFilter, *, after_id: int, batch_size: int
) -> BulkBatch:
    """Delete one batch of the matching jobs after `after_id` (not executing)."""
    return await _bulk_batch(conn, DELETE_JOBS, job_filter, after_id, batch_size)


_BULK = {"cancel": cancel_jobs, "retry": retry_jobs, "delete": delete_jobs}


async def bulk_jobs(
    conn: Conn, job_filter: JobFilter, *, action: str, batch_size: int
) -> list[int]:
    """Cancel, retry or delete every job matching the filter; the ids changed, in order.

    Runs in batches of `batch_size` jobs in id order, each its own statement (and, on a
    pool, its own transaction), so no statement holds more than that many row locks.
    """
    run_batch = _BULK[action]
    changed: list[int] = []
    after_id = 0
    while True:
        batch = await run_batch(conn, job_filter, after_id=after_id, batch_size=batch_size)
        changed += batch.ids
        if batch.scanned < batch_size:
            return changed
        after_id = batch.last_id


async def delete_job(conn: Conn, job_id: int) -> bool:
    """Delete a job that is not executing; False if it is executing or missing."""
    return bool(await _fetch(conn, DELETE_JOB, job_id))
