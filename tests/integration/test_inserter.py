"""Inserts outside a caller's transaction: on a connection held from the pool, grouped into one
statement when many tasks insert at once, one bad job failing only its own insert."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

import jobrunner
from jobrunner import InvalidJob, Job, JobState, worker
from jobrunner.db.inserter import SMALL_BATCH, Inserter, usable
from jobrunner.testing import drain_queue
from tests.helpers import eventually


@worker(name="inserter_tests.plain")
async def plain(job: Job) -> None: ...


async def test_concurrent_inserts_share_statements_and_each_gets_its_own_job(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    jobs = await asyncio.gather(*(client.insert(plain.new({"n": n})) for n in range(40)))
    assert [job.args["n"] for job in jobs] == list(range(40))
    assert len({job.id for job in jobs}) == 40
    assert all(job.state is JobState.AVAILABLE for job in jobs)
    rows = await db.fetch("SELECT id, args, inserted_at FROM jobrunner_jobs ORDER BY id")
    assert {r["id"]: r["args"] for r in rows} == {j.id: f'{{"n": {j.args["n"]}}}' for j in jobs}
    # The first went alone; the 39 that found it under way went in one statement together.
    assert len({r["inserted_at"] for r in rows}) == 2


async def test_a_job_the_database_refuses_fails_only_its_own_insert(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    await db.execute(
        "ALTER TABLE jobrunner_jobs ADD CONSTRAINT inserter_test_refuse CHECK (NOT args ? 'bad')"
    )
    try:
        results = await asyncio.gather(
            *(client.insert(plain.new({"bad": 1} if n == 5 else {"n": n})) for n in range(10)),
            return_exceptions=True,
        )
    finally:
        await db.execute("ALTER TABLE jobrunner_jobs DROP CONSTRAINT inserter_test_refuse")
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 1 and isinstance(refused[0], InvalidJob) and results[5] is refused[0]
    assert await db.fetchval("SELECT count(*) FROM jobrunner_jobs") == 9
    assert await db.fetchval("SELECT count(*) FROM jobrunner_jobs WHERE args ? 'bad'") == 0


async def test_sequential_inserts_keep_one_connection_and_give_it_back_when_idle(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    pool = client.pool
    inserter = Inserter(pool, idle_s=0.2)
    try:
        idle = pool.get_idle_size()
        for n in range(5):
            await inserter.insert([plain.new({"n": n})])
        assert pool.get_idle_size() == idle - 1  # held between inserts
        backends = await db.fetchval(
            "SELECT count(DISTINCT pid) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'jobrunner'"
            " AND query LIKE '%INSERT INTO jobrunner_jobs%'"
        )
        assert backends == 1

        async def given_back() -> bool:
            return pool.get_idle_size() == idle

        await eventually(given_back, timeout_s=5)
    finally:
        await inserter.close()
    assert await db.fetchval("SELECT count(*) FROM jobrunner_jobs") == 5


async def test_a_held_connection_the_server_ended_is_replaced(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    await client.insert(plain.new({"n": 1}))
    pid = await db.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = 'jobrunner'"
        " AND query LIKE '%INSERT INTO jobrunner_jobs%'"
    )
    assert await db.fetchval("SELECT pg_terminate_backend($1)", pid)

    async def closed() -> bool:
        inserter = client._inserter
        return inserter is not None and inserter._conn is not None and not usable(inserter._conn)

    await eventually(closed, timeout_s=5)
    job = await client.insert(plain.new({"n": 2}))
    assert job.args == {"n": 2}
    assert await db.fetchval("SELECT count(*) FROM jobrunner_jobs") == 2


@pytest.mark.parametrize("tasks", [1, 50])
async def test_client_closes_with_a_held_connection(
    settings: jobrunner.Settings, db: asyncpg.Connection, tasks: int
) -> None:
    async with jobrunner.connect(settings=settings) as client:
        await asyncio.gather(*(client.insert(plain.new({"n": n})) for n in range(tasks)))
    assert await db.fetchval("SELECT count(*) FROM jobrunner_jobs") == tasks


async def test_closing_while_an_insert_runs_gives_the_connection_back_when_it_ends(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    pool = client.pool
    idle = pool.get_idle_size()
    inserter = Inserter(pool, idle_s=60)
    running = asyncio.create_task(inserter.insert([plain.new({"n": 1})]))
    await asyncio.sleep(0)  # one turn of the loop: the insert has started, not ended
    assert inserter._busy and not running.done()
    await inserter.close()
    assert (await running)[0].args == {"n": 1}

    async def given_back() -> bool:
        return pool.get_idle_size() == idle

    await eventually(given_back, timeout_s=5)


@worker(queue="inserter_tests", name="inserter_tests.chain")
async def chain(job: Job) -> None:
    if job.args["n"] < 3:
        await jobrunner.current_client().insert(chain.new({"n": job.args["n"] + 1}))


async def test_a_job_drained_in_a_tests_transaction_inserts_through_that_transaction(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    async with client.pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await client.insert(chain.new({"n": 1}), conn=conn)
            result = await drain_queue(client, "inserter_tests", conn=conn, with_recursion=True)
            assert result.completed == 3
            assert await conn.fetchval("SELECT count(*) FROM jobrunner_jobs") == 3
        finally:
            await transaction.rollback()
    assert await db.fetchval("SELECT count(*) FROM jobrunner_jobs") == 0


async def test_a_large_batch_goes_through_the_pool_beside_single_inserts(
    client: jobrunner.Client, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    through = Inserter.insert

    async def spy(self: Inserter, jobs: list[Any]) -> list[Job]:
        sizes.append(len(jobs))
        return await through(self, jobs)

    monkeypatch.setattr(Inserter, "insert", spy)
    large = [plain.new({"n": n}) for n in range(SMALL_BATCH + 1)]
    big, single = await asyncio.gather(client.insert_all(large), client.insert(plain.new({})))
    assert len(big) == SMALL_BATCH + 1 and single.args == {}
    assert sizes == [1]  # only the single insert went through the held connection
    assert await db.fetchval("SELECT count(*) FROM jobrunner_jobs") == SMALL_BATCH + 2


async def test_an_insert_cancelled_mid_statement_leaves_later_inserts_working(
    client: jobrunner.Client, db: asyncpg.Connection, dsn: str
) -> None:
    locker = await asyncpg.connect(dsn)
    try:
        transaction = locker.transaction()
        await transaction.start()
        await locker.execute("LOCK TABLE jobrunner_jobs IN EXCLUSIVE MODE")
        blocked = asyncio.create_task(client.insert(plain.new({"n": "cancelled"})))

        async def waiting_on_the_lock() -> bool:
            return bool(
                await db.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO jobrunner_jobs%'"
                )
            )

        await eventually(waiting_on_the_lock, timeout_s=10)
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked
        await transaction.rollback()
    finally:
        await locker.close()
    job = await client.insert(plain.new({"n": "after"}))
    assert job.args == {"n": "after"}
    rows = await db.fetch("SELECT args->>'n' AS n FROM jobrunner_jobs")
    assert [r["n"] for r in rows] == ["after"]
