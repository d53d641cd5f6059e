"""The sync client: the async client's methods without await, on psycopg 3."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import asyncpg
import psycopg
import psycopg_pool
import pytest

import jobrunner
from jobrunner import JobNotFound, JobState, Unique
from jobrunner.core.config import Settings
from tests.apps.sample import noop, record_run
from tests.helpers import Daemon, eventually


@pytest.fixture
def sync_client(dsn: str, db: asyncpg.Connection) -> Iterator[jobrunner.SyncClient]:
    with jobrunner.connect_sync(dsn) as client:
        yield client


async def test_insert_returns_what_get_job_reads(
    sync_client: jobrunner.SyncClient, client: jobrunner.Client
) -> None:
    job = sync_client.insert(
        noop.new({"n": 1.5, "s": "x"}, tags=["a", "b"], meta={"m": 1}, priority=3)
    )
    assert sync_client.get_job(job.id) == job
    assert await client.get_job(job.id) == job
    later = sync_client.insert(noop.new({}, schedule_in=60))
    assert later.state is JobState.SCHEDULED
    assert sync_client.get_job(later.id) == later


async def test_insert_all_in_order_and_as_the_async_client_builds_them(
    sync_client: jobrunner.SyncClient, client: jobrunner.Client
) -> None:
    jobs = sync_client.insert_all(
        [noop.new({"i": i}, meta={"i": i} if i % 2 else {}) for i in range(50)]
    )
    assert [j.args["i"] for j in jobs] == list(range(50))
    for job in jobs[:5]:
        assert await client.get_job(job.id) == job
    assert sync_client.insert_all([]) == []


def test_unique_conflicts_return_the_existing_job(sync_client: jobrunner.SyncClient) -> None:
    first = sync_client.insert(noop.new({"k": 1}, unique=Unique(period=None)))
    again = sync_client.insert(noop.new({"k": 1}, unique=Unique(period=None)))
    assert again.id == first.id and again.conflict
    batch = sync_client.insert_all(
        [noop.new({"k": 2}, unique=Unique(period=None)) for _ in range(3)]
    )
    assert len({j.id for j in batch}) == 1 and [j.conflict for j in batch] == [False, True, True]


def test_cancel_retry_list(sync_client: jobrunner.SyncClient) -> None:
    job = sync_client.insert(noop.new({}))
    assert sync_client.cancel_job(job.id).state is JobState.CANCELLED
    assert sync_client.cancel_job(job.id).state is JobState.CANCELLED  # already finished
    assert [j.id for j in sync_client.list_jobs(state="cancelled")] == [job.id]
    assert sync_client.retry_jobs(state="cancelled") == [job.id]
    assert sync_client.retry_job(job.id).state is JobState.AVAILABLE
    assert sync_client.list_jobs(state=["available"], worker="sample.noop")[0].id == job.id
    with pytest.raises(JobNotFound):
        sync_client.cancel_job(10**9)
    with pytest.raises(ValueError, match="unknown job state"):
        sync_client.list_jobs(state="nope")
    with pytest.raises(jobrunner.InvalidJob):
        sync_client.insert({"not": "a job"})  # type: ignore[arg-type]


async def test_pause_resume_scale_reach_a_daemon(
    sync_client: jobrunner.SyncClient, daemons: Callable[..., Daemon]
) -> None:
    daemon = await daemons(queues="default:2").start().wait_ready()
    paused = sync_client.pause_queue("default")
    assert paused.ok and paused.persisted and list(paused.applied) == [daemon.node]
    job = sync_client.insert(record_run.new({}))
    assert sync_client.get_job(job.id).state is JobState.AVAILABLE  # type: ignore[union-attr]
    scaled = sync_client.scale_queue("default", 5)
    assert scaled.ok and scaled.applied[daemon.node]
    assert sync_client.resume_queue("default").ok

    async def completed() -> bool:
        return sync_client.get_job(job.id).state is JobState.COMPLETED  # type: ignore[union-attr]

    await eventually(completed, timeout_s=20)
    assert sync_client.reset_queue_limit("default").ok
    with pytest.raises(ValueError, match="unknown queue 'nope'"):
        sync_client.pause_queue("nope")
    with pytest.raises(ValueError, match="limit must be"):
        sync_client.scale_queue("default", 0)


async def test_a_pool_or_a_connection_of_the_callers(dsn: str, db: asyncpg.Connection) -> None:
    with psycopg_pool.ConnectionPool(dsn, kwargs={"autocommit": True}) as pool:
        with jobrunner.connect_sync(pool=pool) as client:
            assert client.get_job(client.insert(noop.new({})).id) is not None
        assert not pool.closed  # left open: it is the caller's
    with psycopg.connect(dsn, autocommit=True) as conn:
        with jobrunner.connect_sync(connection=conn) as client:
            client.insert(noop.new({}))
        assert not conn.closed
    assert await db.fetchval("SELECT count(*) FROM jobrunner_jobs") == 2
    with (
        psycopg.connect(dsn) as conn,
        pytest.raises(jobrunner.InvalidConnection, match="autocommit"),
    ):
        jobrunner.connect_sync(connection=conn).open()


async def test_unmigrated_or_unreachable_database(
    make_database: Callable[[str], object],
) -> None:
    empty = await make_database("jobrunner_test_empty_sync_enqueue")  # type: ignore[misc]
    with pytest.raises(jobrunner.SchemaMissing, match="jobrunner migrate"):
        jobrunner.connect_sync(empty).__enter__()
    with pytest.raises(jobrunner.DatabaseUnavailable, match=r"cannot connect to .*:\*\*\*@"):
        jobrunner.connect_sync(
            "postgresql://u:secret@127.0.0.1:1/x", settings=Settings(database_url=None)
        ).__enter__()
    with pytest.raises(jobrunner.JobRunnerError, match="not connected"):
        jobrunner.connect_sync("postgresql://localhost/x").get_job(1)
