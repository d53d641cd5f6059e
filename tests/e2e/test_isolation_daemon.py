"""A node whose jobs end in outcomes PostgreSQL cannot store as they are keeps working."""

from __future__ import annotations

import asyncpg

import jobrunner
from jobrunner import JobState, NewJob
from tests.helpers import eventually

BAD = {
    "iso.nul": "ValueError: abc\\x00def",
    "iso.surrogate": "FileNotFoundError: no such file: caf\\udce9.txt",
    "iso.snooze_inf": "ValueError: snooze seconds must be seconds from 0 to",
}


async def test_bad_outcomes_beside_healthy_queues(daemons, client, db: asyncpg.Connection) -> None:
    daemon = daemons(queues="iso_bad:4,iso_good:8", app=["tests.apps.isolation_workers"])
    daemon.start()
    await daemon.wait_ready()
    # Each bad job twice: one ends discarded (one attempt), one retryable (attempts left).
    bad = await client.insert_all(
        [
            NewJob(worker=name, queue="iso_bad", args={}, max_attempts=attempts)
            for name in BAD
            for attempts in (1, 5)
        ]
    )
    good = await client.insert_all(
        [NewJob(worker="iso.ok", queue="iso_good", args={"i": i}) for i in range(300)]
    )

    async def all_good_completed() -> bool:
        done = await db.fetchval(
            "SELECT count(*) FROM jobrunner_jobs WHERE queue = 'iso_good' AND state = 'completed'"
        )
        return done == len(good)

    await eventually(all_good_completed, 60)

    async def bad_ended() -> list[jobrunner.Job]:
        jobs = [await client.get_job(job.id) for job in bad]
        assert all(
            j is not None and j.state in (JobState.DISCARDED, JobState.RETRYABLE) for j in jobs
        ), jobs
        return jobs  # type: ignore[return-value]

    ended = await eventually(bad_ended, 30)
    for job in ended:
        expected = JobState.DISCARDED if job.max_attempts == 1 else JobState.RETRYABLE
        assert job.state is expected, job
        assert job.errors and job.errors[-1].error.startswith(BAD[job.worker]), job.errors

    # More healthy work after the bad outcomes: the node still claims and acks.
    more = await client.insert_all(
        [NewJob(worker="iso.ok", queue="iso_good", args={"i": i}) for i in range(50)]
    )

    async def more_completed() -> bool:
        jobs = [await client.get_job(job.id) for job in more]
        return all(j is not None and j.state is JobState.COMPLETED for j in jobs)

    await eventually(more_completed, 30)
    assert await daemon.stop() == 0
    assert not daemon.events("acker.unflushed")
    assert not daemon.events("acker.write_failed")
