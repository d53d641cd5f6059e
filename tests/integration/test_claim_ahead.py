"""Jobs claimed ahead: a batch held ready while the current one runs, visible as such, given
back on pause, scale-down and stop, never for a queue with cluster-wide limits but a global
limit alone (counted in slots the node holds)."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

import jobrunner
from jobrunner import Job, worker
from jobrunner.core.config import Settings
from jobrunner.core.errors import ConfigError
from tests.helpers import eventually

QUEUE = "ahead"
LIMITED = "ahead_limited"

_release = asyncio.Event()
_started: list[int] = []


@worker(queue=QUEUE)
async def hold(job: Job) -> None:
    _started.append(job.id)
    await _release.wait()


@worker(queue=LIMITED)
async def hold_limited(job: Job) -> None:
    _started.append(job.id)
    await _release.wait()


@worker(queue=QUEUE)
async def quick_or_hold(job: Job) -> None:
    _started.append(job.id)
    if not job.args.get("quick"):
        await _release.wait()


def _reset() -> None:
    global _release
    _release = asyncio.Event()
    _started.clear()


async def _executing(db: asyncpg.Connection, queue: str) -> tuple[int, int]:
    """(running, claimed ahead) as the database shows them."""
    row = await db.fetchrow(
        "SELECT count(*) FILTER (WHERE NOT ahead) AS running,"
        " count(*) FILTER (WHERE ahead) AS ahead"
        " FROM jobrunner_jobs WHERE queue = $1 AND state = 'executing'",
        queue,
    )
    return row["running"], row["ahead"]


async def test_a_batch_is_claimed_ahead_and_shown_apart_from_running_jobs(
    client: jobrunner.Client, make_runner, db: asyncpg.Connection
) -> None:
    _reset()
    await client.insert_all([hold.new({"n": n}) for n in range(10)])
    async with make_runner(queues={QUEUE: 3}, heartbeat_interval_s=0.1) as runner:
        producer = runner.producers[QUEUE]
        assert await eventually(lambda: _is(_executing(db, QUEUE), (3, 3)))
        assert producer.running == 3 and producer.ahead == 3
        assert len(_started) == 3  # claimed ahead: not started
        # The node's row says so too (at its next heartbeat): `jobrunner status` reads it.
        assert await eventually(lambda: _is(_node_ahead(db, runner.node), 3))

        # When the running jobs end, the buffered ones start at once and the buffer refills.
        _release.set()
        await eventually(lambda: _is(_count_state(db, "completed"), 10))
    assert await _executing(db, QUEUE) == (0, 0)


async def test_jobs_started_from_the_buffer_are_written_as_started_while_they_run(
    client: jobrunner.Client, make_runner, db: asyncpg.Connection
) -> None:
    """Two quick jobs run first; the two held ones buffered behind them start when they end,
    claimed ahead, and are written as started 50 ms later (one timer for both)."""
    _reset()
    await client.insert_all([quick_or_hold.new({"quick": True}, priority=0) for _ in range(2)])
    await client.insert_all([quick_or_hold.new({"n": n}, priority=1) for n in range(4)])
    async with make_runner(queues={QUEUE: 2}) as runner:
        producer = runner.producers[QUEUE]
        assert await eventually(lambda: _is(_count_state(db, "completed"), 2))
        # the two that started from the buffer show as running, two more are claimed ahead
        assert await eventually(lambda: _is(_executing(db, QUEUE), (2, 2)))
        assert producer.running == 2 and producer.ahead == 2 and len(_started) == 4
        _release.set()
        await eventually(lambda: _is(_count_state(db, "completed"), 6))


async def test_pause_scale_down_and_stop_give_jobs_claimed_ahead_back(
    client: jobrunner.Client, make_runner, db: asyncpg.Connection
) -> None:
    _reset()
    await client.insert_all([hold.new({"n": n}) for n in range(20)])
    async with make_runner(queues={QUEUE: 4}, shutdown_grace_s=0) as runner:
        producer = runner.producers[QUEUE]
        assert await eventually(lambda: _is(_executing(db, QUEUE), (4, 4)))

        await client.scale_queue(QUEUE, 2)
        assert await eventually(lambda: _is(_executing(db, QUEUE), (4, 2)))
        assert producer.ahead == 2

        await client.pause_queue(QUEUE)
        assert await eventually(lambda: _is(_executing(db, QUEUE), (4, 0)))
        assert producer.ahead == 0
        # Given back in their place, the attempt not counted.
        waiting = await db.fetch(
            "SELECT attempt, ahead FROM jobrunner_jobs WHERE queue = $1 AND state = 'available'",
            QUEUE,
        )
        assert len(waiting) == 16 and all(r["attempt"] == 0 for r in waiting)

        await client.resume_queue(QUEUE)
        await client.scale_queue(QUEUE, 4)
        assert await eventually(lambda: _is(_executing(db, QUEUE), (4, 4)))
    # Stopped with grace 0: the running jobs are interrupted and the buffered ones go back.
    assert await _executing(db, QUEUE) == (0, 0)
    assert await _count_state(db, "available") == 20
    assert len(_started) == 4


async def test_a_queue_with_a_rate_limit_never_claims_ahead(
    client: jobrunner.Client, make_runner, db: asyncpg.Connection
) -> None:
    _reset()
    await client.insert_all([hold_limited.new({"n": n}) for n in range(10)])
    # Limits above the local one: the database would let a claim ahead through.
    rate = {"allowed": 1000, "period": "60s"}
    queues = {LIMITED: {"limit": 3, "global_limit": 10, "rate_limit": rate}}
    async with make_runner(queues=queues) as runner:
        producer = runner.producers[LIMITED]
        assert await eventually(lambda: _is(_executing(db, LIMITED), (3, 0)))
        # With every slot taken, a fetch would claim nothing: no room ahead, unlike the
        # same queue without its limits.
        assert producer.ahead_limit == 0 and producer._demand() == (0, 0)
        producer.scale_rate(None)
        producer.scale_global(None)
        assert producer.ahead_limit == 3 and producer._demand() == (3, 0)
        assert await eventually(lambda: _is(_executing(db, LIMITED), (3, 3)))
        assert len(_started) == 3
        _release.set()
        await eventually(lambda: _is(_count_state(db, "completed"), 10))


async def test_a_global_limit_alone_claims_ahead_and_counts_only_started_jobs(
    client: jobrunner.Client, make_runner, db: asyncpg.Connection
) -> None:
    """The node holds slots of the global limit; jobs it claims ahead wait without one."""
    _reset()
    await client.insert_all([hold_limited.new({"n": n}) for n in range(10)])
    queues = {LIMITED: {"limit": 5, "global_limit": 3}}
    async with make_runner(queues=queues) as runner:
        producer = runner.producers[LIMITED]
        # 3 running (the global limit, under the local 5), 3 claimed ahead (a batch of what
        # the node may run: the rest waits for any node)
        assert await eventually(lambda: _is(_executing(db, LIMITED), (3, 3)))
        assert len(_started) == 3 and producer.slots == 3 and producer.run_limit == 3
        held = await db.fetchval(
            "SELECT held FROM jobrunner_queue_slots WHERE queue = $1 AND node = $2",
            LIMITED,
            runner.node,
        )
        assert held == 3
        # Another node of the cluster gets no slot while these are held: a claim by count
        # sees the limit taken.
        taken = await db.fetchval("SELECT jobrunner_limit_used($1, 3)", LIMITED)
        assert taken == 3
        _release.set()
        assert await eventually(lambda: _is(_count_state(db, "completed"), 10))
        # The queue ran dry: its slots go back.
        assert await eventually(
            lambda: db.fetchval(
                "SELECT coalesce(sum(held), 0) = 0 FROM jobrunner_queue_slots WHERE queue = $1",
                LIMITED,
            )
        )


async def _is(value: object, expected: object) -> bool:
    return await value == expected  # type: ignore[misc]


async def _node_ahead(db: asyncpg.Connection, node: str) -> int:
    queues = json.loads(
        await db.fetchval("SELECT queues FROM jobrunner_nodes WHERE name = $1", node)
    )
    return int(queues[QUEUE].get("ahead", 0))


async def _count_state(db: asyncpg.Connection, state: str) -> int:
    return int(await db.fetchval("SELECT count(*) FROM jobrunner_jobs WHERE state = $1", state))


async def test_claim_ahead_false_claims_only_for_free_slots(
    client: jobrunner.Client, make_runner, db: asyncpg.Connection
) -> None:
    _reset()
    await client.insert_all([hold.new({"n": n}) for n in range(10)])
    async with make_runner(queues={QUEUE: 3}, claim_ahead=False) as runner:
        producer = runner.producers[QUEUE]
        assert await eventually(lambda: _is(_executing(db, QUEUE), (3, 0)))
        assert producer.ahead_limit == 0 and producer._demand() == (0, 0)
        _release.set()
        await eventually(lambda: _is(_count_state(db, "completed"), 10))


def test_claim_ahead_must_be_true_or_false() -> None:
    with pytest.raises(ConfigError, match="claim_ahead must be true or false, got 'yes'"):
        Settings(claim_ahead="yes")  # type: ignore[arg-type]
