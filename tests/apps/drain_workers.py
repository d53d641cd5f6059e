"""Workers for the drain tests: a job run by a node that enqueues into another queue."""

from __future__ import annotations

import asyncio

import jobrunner
from jobrunner import Job, worker


@worker(queue="drain_local", name="drain.follow_up", max_attempts=1)
async def follow_up(job: Job) -> None:
    """Fails when args.fail is true: a follow-up the drain must run and report."""
    if job.args.get("fail"):
        raise RuntimeError("the follow-up failed")


@worker(queue="drain_nodes", name="drain.chain")
async def chain(job: Job) -> None:
    """Waits for a row in `control_gate`, then enqueues a follow-up job into `drain_local`."""
    pool = jobrunner.current_client().pool
    while not await pool.fetchval("SELECT EXISTS (SELECT 1 FROM control_gate)"):
        await asyncio.sleep(0.05)
    await jobrunner.current_client().insert(follow_up.new({"fail": job.args.get("fail", False)}))
