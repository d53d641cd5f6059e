"""Cluster-wide limits inside one runner: weights against a rate limit, the local bound, a
rate limit set live on a queue configured without one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg

import jobrunner
from jobrunner.core.limits import RateLimit
from jobrunner.ops import commands
from tests.apps.limit_workers import LOG_TABLE, hold
from tests.helpers import eventually


async def test_a_job_counts_its_weight_against_the_rate_limit(
    db: asyncpg.Connection, client: jobrunner.Client, make_runner: Callable[..., Any]
) -> None:
    await db.execute(LOG_TABLE)
    await db.execute("TRUNCATE limit_log")
    queues = {"api": {"limit": 10, "rate_limit": {"allowed": 5, "period": "1h"}}}
    jobs = [hold.new({}, queue="api", meta={"weight": 2}) for _ in range(3)]
    jobs.append(hold.new({}, queue="api"))  # weight 1, but behind a job that does not fit
    await client.insert_all(jobs)
    async with make_runner(queues=queues) as runner:

        async def two_started() -> bool:
            assert await db.fetchval("SELECT count(*) FROM limit_log") == 2
            return True

        await eventually(two_started, timeout_s=10)
        await runner.producers["api"].fetch_now()  # one more look: nothing else fits
        used = await db.fetchval("SELECT sum(weight) FROM jobrunner_rate_starts")
        assert used == 4
        assert await db.fetchval("SELECT count(*) FROM limit_log") == 2


async def test_the_smaller_of_the_local_and_global_limits_wins(
    db: asyncpg.Connection, client: jobrunner.Client, make_runner: Callable[..., Any]
) -> None:
    await db.execute(LOG_TABLE)
    await db.execute("TRUNCATE limit_log")
    await client.insert_all([hold.new({"sleep": 3600}, queue="both") for _ in range(6)])
    async with make_runner(queues={"both": {"limit": 2, "global_limit": 4}}) as runner:

        async def two_running() -> bool:
            assert await db.fetchval("SELECT count(*) FROM limit_log") == 2
            return True

        await eventually(two_running, timeout_s=10)
        assert await runner.producers["both"].fetch_now() == 0
        runner.producers["both"].scale(10)  # now the global limit is the smaller

        async def four_running() -> bool:
            assert await db.fetchval("SELECT count(*) FROM limit_log") == 4
            return True

        await eventually(four_running, timeout_s=10)
        assert await runner.producers["both"].fetch_now() == 0
        runner.producers["both"].interrupt()


async def test_a_rate_limit_set_live_holds_on_a_queue_configured_without_one(
    db: asyncpg.Connection, client: jobrunner.Client, make_runner: Callable[..., Any]
) -> None:
    await db.execute(LOG_TABLE)
    await db.execute("TRUNCATE limit_log")
    async with make_runner(queues={"api": 10}, node="rate-node-1") as runner:
        done = await commands.scale_rate(
            client, "api", RateLimit(2, 3600.0), timeout_s=5, force=True
        )
        assert (
            done.ok
            and done.persisted
            and done.applied["rate-node-1"]["rate_limit"]
            == {
                "allowed": 2,
                "period_s": 3600.0,
            }
        )
        await client.insert_all([hold.new({}, queue="api") for _ in range(4)])

        async def two_started() -> bool:
            assert await db.fetchval("SELECT count(*) FROM limit_log") == 2
            return True

        await eventually(two_started, timeout_s=10)
        await runner.producers["api"].fetch_now()  # one more look: the window is full
        assert await db.fetchval("SELECT count(*) FROM limit_log") == 2

        done = await commands.scale_rate(client, "api", None, timeout_s=5, force=True)
        assert done.applied["rate-node-1"]["rate_limit"] is None  # none configured: none
        assert runner.producers["api"].limits.rate_limit is None

        async def all_started() -> bool:
            assert await db.fetchval("SELECT count(*) FROM limit_log") == 4
            return True

        await eventually(all_started, timeout_s=10)
