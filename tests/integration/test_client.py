"""The client's life: connecting, a pool of the caller's, and misuse that gets a clear error."""

from __future__ import annotations

import asyncpg
import pytest

import jobrunner
from jobrunner import Job, JobRunnerError, worker
from jobrunner.core.config import Settings


@worker(name="client_tests.task")
async def task(job: Job) -> None: ...


async def test_connect_insert_and_close(dsn: str, db: asyncpg.Connection) -> None:
    client = jobrunner.connect(dsn)
    async with client as entered:
        assert entered is client
        assert client.dsn == dsn
        job = await client.insert(task.new({"n": 1}))
        assert (await client.get_job(job.id)) == job
    with pytest.raises(JobRunnerError, match="the client is not connected; use 'async with"):
        await client.insert(task.new({"n": 2}))
    await client.close()  # closing twice is harmless
    assert await db.fetchval("SELECT count(*) FROM jobrunner_jobs") == 1


async def test_a_client_that_was_never_entered(dsn: str) -> None:
    client = jobrunner.connect(dsn)
    with pytest.raises(JobRunnerError, match="the client is not connected; use 'async with"):
        await client.get_job(1)


async def test_the_callers_pool_is_used_and_left_open(dsn: str, db: asyncpg.Connection) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    try:
        async with jobrunner.connect(dsn, pool=pool) as client:
            assert client.pool is pool
            await client.insert(task.new({}))
        assert await pool.fetchval("SELECT count(*) FROM jobrunner_jobs") == 1  # still open
    finally:
        await pool.close()


async def test_settings_give_the_database(settings: Settings, db: asyncpg.Connection) -> None:
    async with jobrunner.connect(settings=settings) as client:
        assert client.dsn == settings.database_url


async def test_testing_mode_must_be_known(dsn: str) -> None:
    with pytest.raises(ValueError, match="testing must be 'inline', 'manual' or None, got 'auto'"):
        jobrunner.connect(dsn, testing="auto")  # type: ignore[arg-type]


def test_current_client_outside_a_job() -> None:
    with pytest.raises(
        JobRunnerError, match=r"current_client\(\) is only available inside a running job"
    ):
        jobrunner.current_client()
