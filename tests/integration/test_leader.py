"""Leadership: one lease row, renewed by its holder, taken over when it expires or is given up."""

from __future__ import annotations

import asyncpg
import pytest

import jobrunner
from jobrunner.engine.leader import Leader
from tests.helpers import eventually


async def _lease(db: asyncpg.Connection) -> asyncpg.Record | None:
    return await db.fetchrow(
        "SELECT node, elected_at, expires_at, expires_at - now() AS left_ "
        "FROM jobrunner_leader WHERE name = 'jobrunner'"
    )


async def test_one_node_leads_and_renews_its_lease(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    first = Leader(client.pool, node="node-a-1", lease_s=30)
    second = Leader(client.pool, node="node-b-2", lease_s=30)
    assert not first.is_leader
    assert await first._tick() is True
    assert await second._tick() is False
    assert first.is_leader and not second.is_leader
    lease = await _lease(db)
    assert lease is not None and lease["node"] == "node-a-1"
    assert 29 < lease["left_"].total_seconds() <= 30

    await db.execute("UPDATE jobrunner_leader SET expires_at = now() + interval '5 seconds'")
    assert await first._tick() is True
    renewed = await _lease(db)
    assert renewed is not None and renewed["node"] == "node-a-1"
    assert renewed["elected_at"] == lease["elected_at"]
    assert renewed["left_"].total_seconds() > 29
    assert await db.fetchval("SELECT count(*) FROM jobrunner_leader") == 1


async def test_an_expired_lease_is_taken_over(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    first = Leader(client.pool, node="node-a-1", lease_s=30)
    second = Leader(client.pool, node="node-b-2", lease_s=30)
    assert await first._tick() is True
    await db.execute("UPDATE jobrunner_leader SET expires_at = now() - interval '1 millisecond'")
    assert await second._tick() is True
    assert await first._tick() is False
    assert second.is_leader and not first.is_leader
    lease = await _lease(db)
    assert lease is not None and lease["node"] == "node-b-2"


async def test_leadership_lapses_locally_without_renewal(client: jobrunner.Client) -> None:
    """A leader cut off from the database stops acting once its lease would have ended."""
    leader = Leader(client.pool, node="node-a-1", lease_s=0.3)
    assert await leader._tick() is True
    assert leader.is_leader

    async def lapsed() -> bool:
        return not leader.is_leader

    await eventually(lapsed, timeout_s=5)


async def test_a_stopping_leader_hands_over_at_once(
    client: jobrunner.Client, db: asyncpg.Connection, make_runner
) -> None:
    """With a 60 s lease (renewals every 20 s), only the resign NOTIFY explains a quick takeover."""
    async with make_runner(node="node-b-2", leader_lease_s=60) as follower:
        async with make_runner(node="node-a-1", leader_lease_s=60) as leader_runner:
            assert leader_runner.leader is not None and follower.leader is not None
            if follower.leader.is_leader:  # the follower started first: it leads
                leader_runner, follower = follower, leader_runner
            assert leader_runner.leader.is_leader and not follower.leader.is_leader
            old = leader_runner.node
            await leader_runner.stop()

            async def took_over() -> bool:
                lease = await _lease(db)
                assert lease is not None and lease["node"] == follower.node, lease
                return follower.leader.is_leader  # type: ignore[union-attr]

            await eventually(took_over, timeout_s=5)
            assert old != follower.node


async def test_the_runner_exposes_its_leader(client: jobrunner.Client, make_runner) -> None:
    async with make_runner() as runner:
        assert isinstance(runner.leader, Leader)
        assert runner.leader.is_leader and runner.leader.node == runner.node
    assert not runner.leader.is_leader


def test_a_lease_must_be_positive() -> None:
    with pytest.raises(jobrunner.ConfigError, match="leader_lease_s must be > 0 seconds, got 0"):
        Leader(None, node="n", lease_s=0)  # type: ignore[arg-type]
