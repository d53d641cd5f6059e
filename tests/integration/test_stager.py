"""Stager: due scheduled and retryable jobs become available, in batches, with a NOTIFY."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest

import jobrunner
from jobrunner import JobState
from jobrunner.db import queries as _queries
from jobrunner.plugins.stager import Stager
from tests.apps import sample, sched_workers
from tests.helpers import eventually


async def _make_due(db: asyncpg.Connection, ids: list[int], state: str = "scheduled") -> None:
    await db.execute(
        "UPDATE jobrunner_jobs SET state = $2::jobrunner_job_state, "
        "scheduled_at = now() - interval '1 second' WHERE id = ANY($1::bigint[])",
        ids,
        state,
    )


async def _states(db: asyncpg.Connection) -> dict[int, str]:
    rows = await db.fetch("SELECT id, state::text FROM jobrunner_jobs ORDER BY id")
    return {row["id"]: row["state"] for row in rows}


async def test_a_job_scheduled_ahead_runs_on_time(
    client: jobrunner.Client, db: asyncpg.Connection, make_runner
) -> None:
    async with make_runner(queues={"default": 2}):
        job = await client.insert(sample.record_run.new({"n": 1}, schedule_in=1))
        assert job.state is JobState.SCHEDULED

        async def ran() -> asyncpg.Record:
            row = await db.fetchrow(
                "SELECT at, attempt FROM test_executions WHERE job_id = $1", job.id
            )
            assert row is not None
            return row

        execution = await eventually(ran, timeout_s=15)
    assert job.scheduled_at is not None
    assert execution["attempt"] == 1
    late = execution["at"] - job.scheduled_at
    assert timedelta(0) <= late < timedelta(seconds=2), late
    assert await db.fetchval("SELECT count(*) FROM test_executions") == 1


async def test_a_failed_job_is_retried_when_its_backoff_elapses(
    client: jobrunner.Client, db: asyncpg.Connection, make_runner
) -> None:
    async with make_runner(queues={"default": 2}):
        job = await client.insert(sched_workers.Flaky.new({"n": 1}))

        async def completed() -> jobrunner.Job:
            current = await client.get_job(job.id)
            assert current is not None and current.state is JobState.COMPLETED, current
            return current

        done = await eventually(completed, timeout_s=15)
    runs = await db.fetch(
        "SELECT attempt, at FROM test_executions WHERE job_id = $1 ORDER BY attempt", job.id
    )
    assert [r["attempt"] for r in runs] == [1, 2]
    assert done.attempt == 2 and len(done.errors) == 1
    assert done.errors[0].attempt == 1
    assert done.errors[0].error == "RuntimeError: first attempt fails"
    gap = runs[1]["at"] - runs[0]["at"]
    backoff = timedelta(seconds=sched_workers.RETRY_BACKOFF_S)
    assert backoff <= gap < backoff + timedelta(seconds=2), gap


async def test_only_due_scheduled_and_retryable_jobs_are_staged(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    due_scheduled = await client.insert(sample.noop.new({"k": 1}, schedule_in=3600))
    due_retryable = await client.insert(sample.noop.new({"k": 2}, schedule_in=3600))
    future = await client.insert(sample.noop.new({"k": 3}, schedule_in=3600))
    future_retry = await client.insert(sample.noop.new({"k": 4}, schedule_in=3600))
    completed = await client.insert(sample.noop.new({"k": 5}))
    await _make_due(db, [due_scheduled.id])
    await _make_due(db, [due_retryable.id], "retryable")
    await db.execute("UPDATE jobrunner_jobs SET state = 'retryable' WHERE id = $1", future_retry.id)
    await db.execute(
        "UPDATE jobrunner_jobs SET state = 'completed', completed_at = now(), "
        "scheduled_at = now() - interval '1 hour' WHERE id = $1",
        completed.id,
    )

    stager = Stager(client.pool, interval_s=1, batch_size=100)
    assert await stager._tick() == {"default": 2}
    assert await _states(db) == {
        due_scheduled.id: "available",
        due_retryable.id: "available",
        future.id: "scheduled",
        future_retry.id: "retryable",
        completed.id: "completed",
    }
    assert await stager._tick() == {}


async def test_staging_goes_in_bounded_batches_and_notifies_each_queue(
    client: jobrunner.Client, db: asyncpg.Connection, dsn: str
) -> None:
    jobs = await client.insert_all(
        [sample.noop.new({"i": i}, queue="alpha", schedule_in=3600) for i in range(15)]
        + [sample.noop.new({"i": i}, queue="beta", schedule_in=3600) for i in range(10)]
    )
    await _make_due(db, [j.id for j in jobs])
    listener = await asyncpg.connect(dsn)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener("jobrunner_insert", lambda *args: heard.put_nowait(args[3]))
    try:
        one_batch = await _queries.stage_jobs(client.pool, limit=10)
        assert sum(one_batch.values()) == 10
        assert list((await _states(db)).values()).count("available") == 10

        stager = Stager(client.pool, interval_s=1, batch_size=10)
        rest = await stager._tick()
        assert sum(rest.values()) == 15
        assert set((await _states(db)).values()) == {"available"}
        assert sum(one_batch.get(q, 0) + rest.get(q, 0) for q in ("alpha", "beta")) == 25
        assert one_batch.get("alpha", 0) + rest.get("alpha", 0) == 15

        payloads: list[str] = []

        async def heard_both() -> bool:
            while not heard.empty():
                payloads.append(heard.get_nowait())
            assert set(payloads) == {"alpha", "beta"}, payloads
            return True

        await eventually(heard_both, timeout_s=10)
    finally:
        await listener.close()


async def test_two_stagers_at_once_stage_each_job_exactly_once(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    jobs = await client.insert_all(
        [sample.noop.new({"i": i}, schedule_in=3600) for i in range(400)]
    )
    await _make_due(db, [j.id for j in jobs])
    stagers = [Stager(client.pool, interval_s=1, batch_size=25) for _ in range(2)]
    results = await asyncio.gather(*(s._tick() for s in stagers))
    assert sum(r.get("default", 0) for r in results) == 400
    assert set((await _states(db)).values()) == {"available"}


async def test_a_stager_with_bad_settings_refuses_to_start(client: jobrunner.Client) -> None:
    with pytest.raises(jobrunner.ConfigError, match="stage_interval_s must be seconds > 0, got 0"):
        Stager(client.pool, interval_s=0, batch_size=10)
    with pytest.raises(jobrunner.ConfigError, match="stage_batch_size must be an integer >= 1"):
        Stager(client.pool, interval_s=1, batch_size=0)
