"""What triggers ask of the jobs table: a skipped job's reason, and each trigger's
incomplete jobs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from jobrunner.core.job import Job
from jobrunner.db.queries.jobs import Conn, _fetch, _sql

MERGE_JOB_META = _sql("merge_job_meta")
COUNT_INCOMPLETE_BY_WORKER = _sql("count_incomplete_by_worker")


async def merge_job_meta(conn: Conn, job: Job, meta: dict[str, Any]) -> None:
    """Merge `meta` into the meta of `job` while it runs (nothing if it is not executing
    under this worker and attempt: a job built by a test helper)."""
    await conn.execute(MERGE_JOB_META, job.id, orjson.dumps(meta).decode(), job.worker, job.attempt)


async def count_incomplete_by_worker(conn: Conn, workers: Sequence[str]) -> dict[str, int]:
    """How many jobs of each of `workers` are available, scheduled, executing or retryable."""
    rows = await _fetch(conn, COUNT_INCOMPLETE_BY_WORKER, list(workers))
    found = {row["worker"]: int(row["incomplete"]) for row in rows}
    return {name: found.get(name, 0) for name in workers}
