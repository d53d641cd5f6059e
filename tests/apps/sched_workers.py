"""Workers for the scheduler's tests (staging, retries, cron, rescue); each records its runs."""

from __future__ import annotations

import asyncio

from jobrunner import Job, worker
from tests.apps.sample import record

RETRY_BACKOFF_S = 0.5


@worker(queue="default", name="sched.flaky", max_attempts=3)
class Flaky:
    """Fails its first attempt, succeeds after; retried RETRY_BACKOFF_S seconds later."""

    async def perform(self, job: Job) -> None:
        await record(job)
        if job.attempt == 1:
            raise RuntimeError("first attempt fails")

    def backoff(self, job: Job) -> float:
        return RETRY_BACKOFF_S


@worker(queue="default", name="sched.slow_first")
async def slow_first(job: Job) -> None:
    """Records the run; the first attempt then sleeps args.sleep seconds, later ones do not."""
    await record(job)
    if job.attempt == 1:
        await asyncio.sleep(float(job.args.get("sleep", 0)))


@worker(queue="default", name="sched.tick")
async def tick(job: Job) -> None:
    """What the test crontabs insert: records the run."""
    await record(job)
