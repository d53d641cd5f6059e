"""Workers the subprocess daemons in tests run. Each records its executions in a table."""

from __future__ import annotations

import asyncio

import jobrunner
from jobrunner import Job, worker

RECORD_TABLE = """
CREATE TABLE IF NOT EXISTS test_executions (
    job_id   bigint NOT NULL,
    attempt  integer NOT NULL,
    node     text,
    at       timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


async def record(job: Job) -> None:
    pool = jobrunner.current_client().pool
    node = job.attempted_by[0] if job.attempted_by else None
    await pool.execute(
        "INSERT INTO test_executions (job_id, attempt, node) VALUES ($1, $2, $3)",
        job.id,
        job.attempt,
        node,
    )


@worker(queue="default", name="sample.noop")
async def noop(job: Job) -> None:
    """Does nothing."""


@worker(queue="default", name="sample.record")
async def record_run(job: Job) -> None:
    """Records the execution, then sleeps args.sleep seconds (default 0)."""
    await record(job)
    await asyncio.sleep(float(job.args.get("sleep", 0)))


@worker(queue="default", name="sample.fail", max_attempts=3)
async def fail(job: Job) -> None:
    await record(job)
    raise RuntimeError(job.args.get("message", "failed on purpose"))
