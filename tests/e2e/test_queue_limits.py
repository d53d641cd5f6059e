"""Cluster-wide queue limits with several daemon processes on one database.

Each job records its start and end (tests/apps/limit_workers.py); the limits are checked
from those intervals and from the claim times the database recorded.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

import jobrunner
from tests.apps.limit_workers import LOG_TABLE, hold
from tests.helpers import Daemon, eventually

APP = ("tests.apps.limit_workers",)
QUEUES = (
    "flat:3:global_limit=4,parts:4:global_limit=2:partition_keys=customer,rated:5:rate_limit=10/2s"
)


def most_at_once(intervals: Sequence[tuple[datetime, datetime]]) -> int:
    """The largest number of intervals open at one instant (an end before a start at a tie)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = current = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return most


def most_in_window(starts: Sequence[datetime], period: timedelta) -> int:
    """The largest number of starts in any half-open window [t, t + period)."""
    ordered = sorted(starts)
    most, first = 0, 0
    for last, at in enumerate(ordered):
        while ordered[first] <= at - period:
            first += 1
        most = max(most, last - first + 1)
    return most


async def log_rows(db: asyncpg.Connection, queue: str) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM limit_log WHERE queue = $1 ORDER BY started_at", queue)


async def start_daemons(make: Callable[..., Daemon], count: int, queues: str) -> list[Daemon]:
    daemons = [make(queues=queues, app=APP).start() for _ in range(count)]
    for daemon in daemons:
        await daemon.wait_ready()
    return daemons


async def test_three_daemons_never_exceed_global_partition_and_rate_limits(
    db: asyncpg.Connection, client: jobrunner.Client, daemons: Callable[..., Daemon]
) -> None:
    await db.execute(LOG_TABLE)
    await db.execute("TRUNCATE limit_log")
    nodes = await start_daemons(daemons, 3, QUEUES)
    jobs = [hold.new({"sleep": 0.05}, queue="flat") for _ in range(60)]
    jobs += [hold.new({"sleep": 0.05, "customer": i % 4}, queue="parts") for i in range(60)]
    jobs += [hold.new({}, queue="rated") for _ in range(40)]
    await client.insert_all(jobs)

    async def all_done() -> bool:
        done = await db.fetchval("SELECT count(*) FROM limit_log WHERE ended_at IS NOT NULL")
        assert done == len(jobs), f"{done} of {len(jobs)} done"
        return True

    await eventually(all_done, timeout_s=90, interval_s=0.2)

    # Each node's local limit alone would allow 9 flat jobs at once: the global limit is 4.
    flat = await log_rows(db, "flat")
    assert len({r["node"] for r in flat}) >= 2
    assert most_at_once([(r["started_at"], r["ended_at"]) for r in flat]) <= 4

    parts = await log_rows(db, "parts")
    by_part: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for r in parts:
        by_part[r["part"]].append((r["started_at"], r["ended_at"]))
    assert sorted(by_part) == ["0", "1", "2", "3"]
    for part, intervals in by_part.items():
        assert most_at_once(intervals) <= 2, f"partition {part}"
    # The partitions ran side by side: the limit is per partition, not for the queue.
    assert most_at_once([(r["started_at"], r["ended_at"]) for r in parts]) > 2

    # 10 per 2 s: no window of 2 s holds more than 10 claims (the database's claim times).
    period = timedelta(seconds=2)
    claimed = await db.fetch("SELECT attempted_at FROM jobrunner_jobs WHERE queue = 'rated'")
    claims = [r["attempted_at"] for r in claimed]
    assert most_in_window(claims, period) == 10
    # The starts the workers recorded lag their claims by up to `lag`: any window of
    # period - lag of starts holds starts claimed within one period.
    rows = await db.fetch(
        "SELECT l.started_at, l.started_at - j.attempted_at AS lag FROM limit_log AS l "
        "JOIN jobrunner_jobs AS j ON j.id = l.job_id WHERE l.queue = 'rated'"
    )
    lag = max(r["lag"] for r in rows)
    assert timedelta(0) <= lag < period, lag
    assert most_in_window([r["started_at"] for r in rows], period - lag) <= 10
    # Throughput reaches the limit: 40 jobs are 4 windows, the last opening at 6 s.
    assert max(claims) - min(claims) < timedelta(seconds=6 + 2.5), max(claims) - min(claims)
    for node in nodes:
        assert await node.stop() == 0


async def test_a_killed_node_gives_back_its_global_slots_when_its_lease_expires(
    db: asyncpg.Connection, client: jobrunner.Client, daemons: Callable[..., Daemon]
) -> None:
    await db.execute(LOG_TABLE)
    await db.execute("TRUNCATE limit_log")
    queues = "flat:2:global_limit=2"
    (first,) = await start_daemons(daemons, 1, queues)
    await client.insert_all([hold.new({"sleep": 3600}, queue="flat") for _ in range(2)])

    async def holding() -> bool:
        assert await db.fetchval("SELECT count(*) FROM limit_log") == 2
        return True

    await eventually(holding, timeout_s=20)
    (second,) = await start_daemons(daemons, 1, queues)
    await client.insert_all([hold.new({"sleep": 0}, queue="flat") for _ in range(3)])
    first.kill()
    killed_at: datetime = await db.fetchval("SELECT clock_timestamp()")

    async def taken_over() -> bool:
        n = await db.fetchval("SELECT count(*) FROM limit_log WHERE node = $1", second.node)
        assert n >= 3, f"{n} jobs started on the surviving node"
        return True

    await eventually(taken_over, timeout_s=30, interval_s=0.1)
    later = await db.fetch("SELECT started_at FROM limit_log WHERE node = $1", second.node)
    # The dead node's two jobs held both slots until its lease (3 s) ran out.
    assert min(r["started_at"] for r in later) > killed_at + timedelta(seconds=1.5)
    assert await second.stop() == 0


async def test_slots_of_a_global_limit_never_exceed_it_and_are_shared_between_nodes(
    db: asyncpg.Connection, client: jobrunner.Client, daemons: Callable[..., Daemon]
) -> None:
    """A global limit alone is counted in slots the nodes hold, each node claiming ahead:
    with short jobs (many asks, slots moving between nodes) and long ones (busy nodes that
    must share), never more than the limit at once, and every node gets its share."""
    await db.execute(LOG_TABLE)
    await db.execute("TRUNCATE limit_log")
    nodes = await start_daemons(daemons, 3, "flat:4:global_limit=4")
    jobs = [hold.new({"sleep": 0.002 * (i % 7)}, queue="flat") for i in range(400)]
    jobs += [hold.new({"sleep": 0.25}, queue="flat") for _ in range(48)]
    await client.insert_all(jobs)

    async def all_done() -> bool:
        done = await db.fetchval("SELECT count(*) FROM limit_log WHERE ended_at IS NOT NULL")
        assert done == len(jobs), f"{done} of {len(jobs)} done"
        return True

    await eventually(all_done, timeout_s=90, interval_s=0.2)
    flat = await log_rows(db, "flat")
    assert len(flat) == len(jobs)  # each ran once
    assert most_at_once([(r["started_at"], r["ended_at"]) for r in flat]) <= 4
    # The long jobs: 12 rounds of 4 if the slots are used; each node ran some of them.
    long_rows = [r for r in flat if r["ended_at"] - r["started_at"] >= timedelta(seconds=0.2)]
    per_node = defaultdict(int)
    for r in long_rows:
        per_node[r["node"]] += 1
    assert len(per_node) == 3 and min(per_node.values()) >= 4, dict(per_node)
    for node in nodes:
        assert await node.stop() == 0
    # Stopped nodes hold no slots once another node asks, or once their rows go.
    assert await db.fetchval("SELECT coalesce(sum(held), 0) FROM jobrunner_queue_slots") <= 4


@pytest.mark.parametrize("burst", [5_000])
async def test_a_burst_in_one_partition_never_holds_back_another(
    db: asyncpg.Connection,
    client: jobrunner.Client,
    make_runner: Callable[..., Any],
    burst: int,
) -> None:
    await db.execute(LOG_TABLE)
    await db.execute("TRUNCATE limit_log")
    queues = {
        "fair": {
            "limit": 10,
            "rate_limit": {"allowed": 5, "period": "60s"},
            "partition": {"keys": ["customer"]},
        }
    }
    await client.insert_all([hold.new({"customer": "A"}, queue="fair") for _ in range(burst)])
    async with make_runner(queues=queues):

        async def a_used_its_allowance() -> bool:
            assert await db.fetchval("SELECT count(*) FROM limit_log") == 5
            return True

        await eventually(a_used_its_allowance, timeout_s=20)
        (b,) = await client.insert_all([hold.new({"customer": "B"}, queue="fair")])

        async def b_started() -> asyncpg.Record:
            row = await db.fetchrow(
                "SELECT inserted_at, attempted_at FROM jobrunner_jobs WHERE id = $1", b.id
            )
            assert row["attempted_at"] is not None, "B has not started"
            return row

        row = await eventually(b_started, timeout_s=10)
        assert row["attempted_at"] - row["inserted_at"] < timedelta(seconds=1)
        waiting = await db.fetchval(
            "SELECT count(*) FROM jobrunner_jobs WHERE queue = 'fair' AND state = 'available'"
        )
        assert waiting == burst - 5
