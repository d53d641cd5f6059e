"""Workers of the fault suite. Each execution records one row in `fault_executions`.

The row is written first thing, under a token drawn once per execution, and the write is
retried (the database may be restarting) with ON CONFLICT DO NOTHING: a retry after a
lost reply never records one execution twice. This is the idempotent-worker pattern the
README recommends; here it makes the table an exact ledger of executions.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import jobrunner
from jobrunner import Job, worker

EXECUTIONS_TABLE = """
CREATE TABLE IF NOT EXISTS fault_executions (
    token    uuid PRIMARY KEY,
    job_id   bigint NOT NULL,
    attempt  integer NOT NULL,
    node     text NOT NULL,
    pid      integer NOT NULL,
    at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS fault_executions_job_idx ON fault_executions (job_id)
"""

RECORD = """
INSERT INTO fault_executions (token, job_id, attempt, node, pid) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (token) DO NOTHING
"""

RECORD_DEADLINE_S = 60.0


async def record(job: Job, *, count: bool = False) -> int | None:
    """Record this execution (retrying through outages); with `count`, return how many
    executions the job has had."""
    pool = jobrunner.current_client().pool
    token = uuid.uuid4()
    node = job.attempted_by[0] if job.attempted_by else "?"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RECORD_DEADLINE_S
    delay = 0.02
    while True:
        try:
            async with pool.acquire() as conn:
                await conn.execute(RECORD, token, job.id, job.attempt, node, os.getpid())
                if not count:
                    return None
                n: int = await conn.fetchval(
                    "SELECT count(*) FROM fault_executions WHERE job_id = $1", job.id
                )
                return n
        except Exception:  # any connection or server error: the database may be restarting
            if loop.time() > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)


class _FastRetry:
    """Failures (none are expected) retry at once rather than after Oban's backoff."""

    def backoff(self, job: Job) -> float:
        return 0.1


@worker(queue="faults", name="faults.record", max_attempts=20)
class Record(_FastRetry):
    """Records the execution, then sleeps `args.sleep` seconds (default 0)."""

    async def perform(self, job: Job) -> None:
        await record(job)
        await asyncio.sleep(float(job.args.get("sleep", 0)))


@worker(queue="faults", name="faults.long_first", max_attempts=20)
class LongFirst(_FastRetry):
    """Sleeps `args.sleep` seconds on its first execution only, so that a stop that
    interrupts it is visible and the job still finishes on a later node."""

    async def perform(self, job: Job) -> None:
        if await record(job, count=True) == 1:
            await asyncio.sleep(float(job.args["sleep"]))
