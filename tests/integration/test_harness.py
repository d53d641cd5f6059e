"""The harness itself: an in-process runner and a subprocess daemon both run jobs."""

from __future__ import annotations

import asyncio

import asyncpg

import jobrunner
from jobrunner import Job, JobState, worker
from tests.apps import sample
from tests.helpers import eventually


async def test_in_process_runner_completes_a_job(client: jobrunner.Client, make_runner) -> None:
    seen: asyncio.Queue[Job] = asyncio.Queue()

    @worker(queue="default")
    async def hello(job: Job) -> None:
        seen.put_nowait(job)

    async with make_runner(queues={"default": 2}):
        inserted = await client.insert(hello.new({"n": 1}))
        ran = await asyncio.wait_for(seen.get(), timeout=5)
        assert ran.id == inserted.id and ran.args == {"n": 1}

        async def completed() -> bool:
            job = await client.get_job(inserted.id)
            assert job is not None and job.state is JobState.COMPLETED
            return True

        await eventually(completed)


async def test_subprocess_daemon_runs_jobs_and_stops_cleanly(
    client: jobrunner.Client, db: asyncpg.Connection, daemons
) -> None:
    daemon = daemons(queues="default:5").start()
    await daemon.wait_ready()
    jobs = await client.insert_all([sample.record_run.new({"i": i}) for i in range(20)])

    async def all_recorded() -> bool:
        n = await db.fetchval("SELECT count(*) FROM test_executions")
        assert n == 20, n
        return True

    await eventually(all_recorded)
    assert await daemon.stop() == 0
    states = {(await client.get_job(j.id)).state for j in jobs}  # type: ignore[union-attr]
    assert states == {JobState.COMPLETED}
    assert await db.fetchval("SELECT count(*) FROM jobrunner_nodes") == 0
