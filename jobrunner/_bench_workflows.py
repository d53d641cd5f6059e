"""The benchmark's workflows case: a fan-out/fan-in workflow burned down beside as many plain
jobs, so that what a step's dependencies cost is the ratio of the two times."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from jobrunner import _bench_workers
from jobrunner._bench_cases import SPAN, burn_down
from jobrunner._bench_harness import Context, Daemon, Metrics, reset
from jobrunner.client import connect
from jobrunner.core.workflow import Workflow

COMPLETED = "SELECT count(*) FROM jobrunner_jobs WHERE workflow_id = $1 AND state = 'completed'"


def fan_out_fan_in(steps: int) -> Workflow:
    """One step, then `steps - 2` steps that each wait on it, then one that waits on them all."""
    wf = Workflow("bench-fan")
    noop = _bench_workers.noop
    wf.add("start", noop.new({"n": 0}))
    middle = [f"part-{i}" for i in range(steps - 2)]
    for i, name in enumerate(middle):
        wf.add(name, noop.new({"n": i + 1}), deps=["start"])
    wf.add("finish", noop.new({"n": steps}), deps=middle)
    return wf


async def workflow_burn_down(ctx: Context, concurrency: int) -> Metrics:
    """The fan-out/fan-in workflow for an idle daemon: first claim to last completion (the
    database's clock, as the plain burn-down), and the time to insert it."""
    steps = ctx.sizes.workflow_steps
    wf = fan_out_fan_in(steps)
    async with connect(ctx.dsn) as client, client.pool.acquire() as conn:
        await reset(conn)
        floor = await conn.fetchval("SELECT coalesce(max(id), 0) FROM jobrunner_jobs")
        async with Daemon(ctx, concurrency) as daemon:
            started = time.perf_counter()
            run = await client.insert_workflow(wf)
            insert_s = time.perf_counter() - started
            deadline = time.monotonic() + 60 + steps / 100
            while await conn.fetchval(COMPLETED, run.id) < steps:
                daemon.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the workflow's {steps} steps not done in time")
                await asyncio.sleep(0.05)
        row = await conn.fetchrow(SPAN, floor)
    return {"steps_per_s": steps / row["span_s"], "seconds": row["span_s"], "insert_s": insert_s}


async def workflows(ctx: Context) -> Metrics:
    """The workflow beside as many plain jobs, both at concurrency 10."""
    plain_ctx = replace(ctx, sizes=replace(ctx.sizes, burn_jobs=ctx.sizes.workflow_steps))
    plain = await burn_down(plain_ctx, 10)
    ctx.daemons = plain_ctx.daemons
    flow = await workflow_burn_down(ctx, 10)
    return {
        "workflow_plain_c10": plain["jobs_per_s"],
        "workflow_c10": flow["steps_per_s"],
        "workflow_ratio": flow["seconds"] / plain["seconds"],
        "workflow_insert_s": flow["insert_s"],
    }
