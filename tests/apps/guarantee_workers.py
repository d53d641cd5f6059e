"""Workers of the guarantees scenarios: each execution is recorded in `fault_executions`
(see faults_workers), and runs that overlap in one process are recorded in `fault_overlaps`."""

from __future__ import annotations

import asyncio
import os

import jobrunner
from jobrunner import Job, worker
from tests.apps.faults_workers import record

OVERLAPS_TABLE = """
CREATE TABLE IF NOT EXISTS fault_overlaps (
    job_id  bigint NOT NULL,
    pid     integer NOT NULL,
    at      timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

_running_here: set[int] = set()


@worker(queue="held", name="guarantees.hold_connection", max_attempts=20)
async def hold_connection(job: Job) -> None:
    """Records the execution, then holds a connection of client.pool for `args.hold` seconds,
    as a worker doing a long transaction of its own does."""
    await record(job)
    async with jobrunner.current_client().pool.acquire() as conn:
        await conn.execute("SELECT pg_sleep($1)", float(job.args["hold"]))


@worker(queue="paused", name="guarantees.long_run", max_attempts=20)
async def long_run(job: Job) -> None:
    """Records the execution, and an overlap if another run of this job is under way in this
    process; then sleeps `args.sleep` seconds."""
    if job.id in _running_here:
        await jobrunner.current_client().pool.execute(
            "INSERT INTO fault_overlaps (job_id, pid) VALUES ($1, $2)", job.id, os.getpid()
        )
    _running_here.add(job.id)
    try:
        await record(job)
        await asyncio.sleep(float(job.args["sleep"]))
    finally:
        _running_here.discard(job.id)
