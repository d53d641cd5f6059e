"""What holds under contention and odd timing: runs told apart by claim, cancels decided
after the lock, a stop that can be finished, unique inserts that hold no running job's lock,
and pool waits that end."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

import jobrunner
from jobrunner import Job, JobState, Snooze, Unique, worker
from jobrunner.core.errors import PoolTimeout
from jobrunner.db import queries as _queries
from jobrunner.engine.executor import to_ack
from tests.helpers import eventually

QUEUE = "guarantees"


@worker(queue=QUEUE, name="guarantees.idle")
async def idle(job: Job) -> None:
    """Never run by a daemon here: these tests claim and ack by hand."""


@worker(queue=QUEUE, name="guarantees.unique", unique=Unique(period=60))
async def unique_idle(job: Job) -> None:
    """Never run by a daemon here."""


async def _claim(client: jobrunner.Client, node: str, claim: str) -> Job:
    [job] = await _queries.fetch_jobs(client.pool, queue=QUEUE, demand=1, node=node, claim=claim)
    return job


async def test_a_resent_snooze_never_lands_on_a_later_run_of_the_same_node(client, db) -> None:
    """A snooze gives the attempt back, so the next run by the same node has the same node
    and attempt: only the claim tells them apart. The snooze's outcome, resent after an
    ambiguous failure, must not move the later run to scheduled."""
    inserted = await client.insert(idle.new({}))
    first = await _claim(client, "node-a", "claim-1")
    snooze, _ = to_ack(first, Snooze(0), None, None)
    assert await _queries.ack_jobs(client.pool, "node-a", [snooze]) == {inserted.id}
    await db.execute("UPDATE jobrunner_jobs SET state = 'available' WHERE id = $1", inserted.id)
    second = await _claim(client, "node-a", "claim-2")
    assert (second.attempt, second.attempted_by[0]) == (first.attempt, first.attempted_by[0])

    assert await _queries.ack_jobs(client.pool, "node-a", [snooze]) == set()  # the resend
    job = await client.get_job(inserted.id)
    assert job is not None and job.state is JobState.EXECUTING
    assert job.attempted_by == ("node-a", "claim-2")
    done, _ = to_ack(second, None, None, None)
    assert await _queries.ack_jobs(client.pool, "node-a", [done]) == {inserted.id}
    job = await client.get_job(inserted.id)
    assert job is not None and job.state is JobState.COMPLETED


async def _waiting_on_a_lock(db: asyncpg.Connection, pid: int) -> bool:
    return bool(
        await db.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
        )
    )


async def test_a_cancel_that_waited_on_a_claim_tells_the_node(client, db, dsn) -> None:
    """cancel_job waits on the row lock of a claim under way; once the claim commits the job
    is executing, so the node must be told to stop it."""
    inserted = await client.insert(idle.new({}))
    told: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(dsn)
    claimer = await asyncpg.connect(dsn)
    canceller = await asyncpg.connect(dsn)
    try:
        await listener.add_listener("jobrunner_cancel", lambda *a: told.put_nowait(a[3]))
        claim = claimer.transaction()
        await claim.start()
        [job] = await _queries.fetch_jobs(claimer, queue=QUEUE, demand=1, node="node-c")
        cancel = asyncio.create_task(_queries.cancel_job(canceller, inserted.id))
        pid = canceller.get_server_pid()
        await eventually(lambda: _waiting_on_a_lock(db, pid), timeout_s=10)
        await claim.commit()
        cancelled = await asyncio.wait_for(cancel, 10)
        assert cancelled is not None and cancelled.state is JobState.CANCELLED
        assert await asyncio.wait_for(told.get(), 10) == f"node-c {job.id}"
    finally:
        for conn in (listener, claimer, canceller):
            await conn.close()


@worker(queue=QUEUE, name="guarantees.sleeper")
async def sleeper(job: Job) -> None:
    started.set()
    await asyncio.sleep(float(job.args["sleep"]))


started = asyncio.Event()


async def test_stop_called_again_after_a_cancelled_stop_finishes_it(
    client, db, make_runner, settings
) -> None:
    """`wait_for(runner.stop(grace=30), ...)` gives up while a job runs; a second stop()
    must finish the stop: loops ended, listener closed, node row gone."""
    started.clear()
    runner = jobrunner.Runner(client, {QUEUE: 2}, settings=settings, node="node-stop")
    await runner.start()
    try:
        await client.insert(sleeper.new({"sleep": 60}))
        await asyncio.wait_for(started.wait(), 10)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(runner.stop(grace=30), 0.5)
        await asyncio.wait_for(runner.stop(grace=0), 15)
    finally:
        await runner.stop(grace=0)
    assert runner.stopped.is_set()
    assert not await db.fetchval("SELECT count(*) FROM jobrunner_nodes WHERE name = 'node-stop'")
    assert runner.notifier.backend_pid is None
    assert all(p._task is None for p in runner.producers.values())
    job = (await client.list_jobs(queue=QUEUE))[0]
    assert job.state is JobState.AVAILABLE  # interrupted: back in the queue


async def test_a_unique_insert_in_an_open_transaction_holds_no_running_jobs_lock(
    client, db, dsn
) -> None:
    """A unique insert whose period has passed releases the old job's key; if that job is
    executing, its outcome must not wait for the caller's transaction to commit."""
    old = await client.insert(unique_idle.new({"k": 1}))
    running = await _claim(client, "node-u", "claim-u")
    await db.execute(
        "UPDATE jobrunner_jobs SET inserted_at = now() - interval '2 minutes' WHERE id = $1",
        old.id,
    )
    caller = await asyncpg.connect(dsn)
    acker = await asyncpg.connect(dsn)
    try:
        await acker.execute("SET lock_timeout = '3s'")
        async with caller.transaction():
            new = await client.insert(unique_idle.new({"k": 1}), conn=caller)
            assert not new.conflict and new.id != old.id
            done, _ = to_ack(running, None, None, None)
            assert await _queries.ack_jobs(acker, "node-u", [done]) == {old.id}
    finally:
        await caller.close()
        await acker.close()
    assert (await client.get_job(old.id)).state is JobState.COMPLETED  # type: ignore[union-attr]
    again = await client.insert(unique_idle.new({"k": 1}))
    assert again.conflict and again.id == new.id


async def test_a_pool_held_by_workers_makes_the_next_acquisition_fail_not_hang(
    db, settings
) -> None:
    """Every connection of client.pool held: the next acquisition, a worker's or jobrunner's
    own, fails with PoolTimeout after pool_timeout_s instead of waiting for ever."""
    custom = jobrunner.Settings(database_url=settings.database_url, pool_size=2, pool_timeout_s=0.2)
    async with jobrunner.connect(settings=custom) as client:
        held = [await client.pool.acquire() for _ in range(2)]
        try:
            with pytest.raises(PoolTimeout, match="pool_size"):
                async with client.pool.acquire():
                    pass
            with pytest.raises(PoolTimeout):
                await client.insert(idle.new({}))
        finally:
            for conn in held:
                await client.pool.release(conn)
        assert (await client.insert(idle.new({}))).id > 0
