"""Rescuer: jobs left executing by dead nodes go back to the queue; live nodes are never touched."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta

import asyncpg
import pytest

import jobrunner
from jobrunner import JobState
from jobrunner.engine.leader import Leader
from jobrunner.plugins.rescuer import Rescuer
from tests.apps import sample
from tests.helpers import eventually

LEASE_S = 30.0


async def add_node(db: asyncpg.Connection, name: str, *, expires_in_s: float) -> None:
    await db.execute(
        "INSERT INTO jobrunner_nodes (name, host, pid, expires_at) "
        "VALUES ($1, 'host', 1, now() + make_interval(secs => $2))",
        name,
        expires_in_s,
    )


async def executing(
    client: jobrunner.Client,
    db: asyncpg.Connection,
    node: str,
    *,
    started_s_ago: float,
    attempt: int = 1,
    max_attempts: int = 20,
    queue: str = "default",
) -> int:
    job = await client.insert(
        sample.noop.new({"node": node}, queue=queue, max_attempts=max_attempts)
    )
    await db.execute(
        "UPDATE jobrunner_jobs SET state = 'executing', attempt = $3, attempted_by = ARRAY[$2], "
        "attempted_at = now() - make_interval(secs => $4) WHERE id = $1",
        job.id,
        node,
        attempt,
        started_s_ago,
    )
    return job.id


async def job(client: jobrunner.Client, job_id: int) -> jobrunner.Job:
    found = await client.get_job(job_id)
    assert found is not None
    return found


async def test_a_dead_nodes_job_goes_back_to_available(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    await add_node(db, "dead-1", expires_in_s=-1)
    job_id = await executing(client, db, "dead-1", started_s_ago=5, attempt=2)
    before = await db.fetchval("SELECT now()")
    [rescued] = await Rescuer(client.pool, interval_s=1, node_lease_s=LEASE_S)._tick()
    assert rescued.id == job_id
    after = await job(client, job_id)
    assert after.state is JobState.AVAILABLE and after.attempt == 2
    assert after.scheduled_at is not None and after.scheduled_at >= before
    [error] = after.errors
    assert (error.attempt, error.error, error.traceback) == (
        2,
        "orphaned: node dead-1 stopped heartbeating",
        None,
    )
    assert abs(datetime.fromisoformat(error.at) - before) < timedelta(seconds=5)
    assert error.at.endswith("+00:00")
    assert await db.fetchval("SELECT count(*) FROM jobrunner_nodes") == 0


async def test_a_job_with_no_attempts_left_is_discarded(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    await add_node(db, "dead-1", expires_in_s=-1)
    job_id = await executing(client, db, "dead-1", started_s_ago=5, attempt=3, max_attempts=3)
    await Rescuer(client.pool, interval_s=1, node_lease_s=LEASE_S)._tick()
    after = await job(client, job_id)
    assert after.state is JobState.DISCARDED and after.discarded_at is not None
    assert [e.error for e in after.errors] == ["orphaned: node dead-1 stopped heartbeating"]


async def test_a_job_claimed_ahead_gets_its_attempt_back_and_is_never_discarded(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    """A dead node's job that waited in its buffer never started: the attempt was not used."""
    await add_node(db, "dead-1", expires_in_s=-1)
    job_id = await executing(client, db, "dead-1", started_s_ago=5, attempt=3, max_attempts=3)
    await db.execute("UPDATE jobrunner_jobs SET ahead = true WHERE id = $1", job_id)
    await Rescuer(client.pool, interval_s=1, node_lease_s=LEASE_S)._tick()
    after = await job(client, job_id)
    assert after.state is JobState.AVAILABLE and after.attempt == 2
    assert [e.error for e in after.errors] == [
        "orphaned: node dead-1 stopped heartbeating (claimed ahead, not started)"
    ]
    assert await db.fetchval("SELECT ahead FROM jobrunner_jobs WHERE id = $1", job_id) is False


async def test_live_nodes_jobs_are_never_touched(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    await add_node(db, "live-1", expires_in_s=LEASE_S)
    long_running = await executing(client, db, "live-1", started_s_ago=6 * 3600)
    rescuer = Rescuer(client.pool, interval_s=1, node_lease_s=LEASE_S)
    assert await rescuer._tick() == []
    after = await job(client, long_running)
    assert after.state is JobState.EXECUTING and after.errors == ()
    assert await db.fetchval("SELECT count(*) FROM jobrunner_nodes") == 1


async def test_a_job_of_a_node_without_a_row_waits_for_a_lease(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    """Inline mode and `drain` run jobs under a node name with no row: give them a lease."""
    recent = await executing(client, db, "drain-7", started_s_ago=LEASE_S - 10)
    old = await executing(client, db, "drain-8", started_s_ago=LEASE_S + 10)
    rescued = await Rescuer(client.pool, interval_s=1, node_lease_s=LEASE_S)._tick()
    assert [j.id for j in rescued] == [old]
    assert (await job(client, recent)).state is JobState.EXECUTING
    rescued_job = await job(client, old)
    assert rescued_job.state is JobState.AVAILABLE
    assert [e.error for e in rescued_job.errors] == ["orphaned: node drain-8 stopped heartbeating"]


async def test_rescued_queues_are_woken(
    client: jobrunner.Client, db: asyncpg.Connection, dsn: str
) -> None:
    await add_node(db, "dead-1", expires_in_s=-1)
    await executing(client, db, "dead-1", started_s_ago=1, queue="mail")
    listener = await asyncpg.connect(dsn)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener("jobrunner_insert", lambda *args: heard.put_nowait(args[3]))
    try:
        await Rescuer(client.pool, interval_s=1, node_lease_s=LEASE_S)._tick()
        assert await asyncio.wait_for(heard.get(), 10) == "mail"
    finally:
        await listener.close()


async def test_only_the_leader_rescues(client: jobrunner.Client, db: asyncpg.Connection) -> None:
    await add_node(db, "dead-1", expires_in_s=-1)
    job_id = await executing(client, db, "dead-1", started_s_ago=5)
    leader = Leader(client.pool, node="node-a-1", lease_s=30)
    follower = Leader(client.pool, node="node-b-2", lease_s=30)
    assert await leader._tick() and not await follower._tick()
    assert (
        await Rescuer(client.pool, interval_s=1, node_lease_s=LEASE_S, leader=follower)._tick()
        == []
    )
    assert (await job(client, job_id)).state is JobState.EXECUTING
    assert await db.fetchval("SELECT count(*) FROM jobrunner_nodes") == 1
    rescued = await Rescuer(client.pool, interval_s=1, node_lease_s=LEASE_S, leader=leader)._tick()
    assert [j.id for j in rescued] == [job_id]


async def test_the_error_entry_is_stored_as_json(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    await add_node(db, "dead-1", expires_in_s=-1)
    job_id = await executing(client, db, "dead-1", started_s_ago=5)
    await Rescuer(client.pool, interval_s=1, node_lease_s=LEASE_S)._tick()
    [entry] = json.loads(
        await db.fetchval("SELECT errors::text FROM jobrunner_jobs WHERE id = $1", job_id)
    )
    assert sorted(entry) == ["at", "attempt", "error", "traceback"]
    assert entry["traceback"] is None and entry["attempt"] == 1


def test_a_lease_must_be_positive() -> None:
    with pytest.raises(jobrunner.ConfigError, match="node_lease_s must be seconds > 0, got 0"):
        Rescuer(None, interval_s=1, node_lease_s=0)  # type: ignore[arg-type]


async def test_after_an_outage_it_waits_for_live_nodes_to_heartbeat(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    # A node whose lease ran out while the database was away looks dead, but may be alive.
    await add_node(db, "maybe-alive", expires_in_s=-1)
    job_id = await executing(client, db, "maybe-alive", started_s_ago=60)
    settled = False
    rescuer = Rescuer(client.pool, interval_s=1, node_lease_s=LEASE_S, settled=lambda: settled)
    assert await rescuer._tick() == []
    assert (await job(client, job_id)).state is JobState.EXECUTING
    settled = True
    [rescued] = await rescuer._tick()
    assert rescued.id == job_id


async def test_a_failed_heartbeat_unsettles_the_node_for_a_lease(
    client: jobrunner.Client, make_runner
) -> None:
    async with make_runner(queues={"default": 1}, node_lease_s=3) as runner:
        assert runner.heartbeat_settled()
        # The node's heartbeat fails, as it would with the database away.
        await client.pool.execute("ALTER TABLE jobrunner_nodes RENAME TO jobrunner_nodes_away")
        try:

            async def unsettled() -> bool:
                return not runner.heartbeat_settled()

            await eventually(unsettled, timeout_s=15)
        finally:
            await client.pool.execute("ALTER TABLE jobrunner_nodes_away RENAME TO jobrunner_nodes")
