"""conn= with every kind of caller's connection: the job is written in the caller's
transaction (a rollback leaves no job; a commit leaves one that a daemon subprocess runs)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import jobrunner
from jobrunner import Job
from tests.apps.sample import record_run
from tests.helpers import Daemon, eventually


@dataclass
class Tx:
    """The caller's open transaction: what to pass as conn=, and how to end it."""

    conn: Any
    commit: Callable[[], Awaitable[None]]
    rollback: Callable[[], Awaitable[None]]


def _sync(function: Callable[[], Any]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        function()

    return run


def _url(dsn: str, driver: str) -> str:
    return dsn.replace("postgresql://", f"postgresql+{driver}://", 1)


@asynccontextmanager
async def asyncpg_tx(dsn: str) -> AsyncIterator[Tx]:
    conn = await asyncpg.connect(dsn)
    tx = conn.transaction()
    await tx.start()
    try:
        yield Tx(conn, tx.commit, tx.rollback)
    finally:
        await conn.close()


@asynccontextmanager
async def psycopg_async_tx(dsn: str) -> AsyncIterator[Tx]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        yield Tx(conn, conn.commit, conn.rollback)


@asynccontextmanager
async def psycopg_sync_tx(dsn: str) -> AsyncIterator[Tx]:
    with psycopg.connect(dsn) as conn:
        yield Tx(conn, _sync(conn.commit), _sync(conn.rollback))


@asynccontextmanager
async def sa_connection_tx(dsn: str) -> AsyncIterator[Tx]:
    engine = create_engine(_url(dsn, "psycopg"))
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            yield Tx(conn, _sync(conn.commit), _sync(conn.rollback))
    finally:
        engine.dispose()


@asynccontextmanager
async def sa_session_tx(dsn: str) -> AsyncIterator[Tx]:
    engine = create_engine(_url(dsn, "psycopg"))
    try:
        with Session(engine) as session:
            yield Tx(session, _sync(session.commit), _sync(session.rollback))
    finally:
        engine.dispose()


@asynccontextmanager
async def sa_async_connection_tx(dsn: str) -> AsyncIterator[Tx]:
    engine = create_async_engine(_url(dsn, "asyncpg"))
    try:
        async with engine.connect() as conn:
            yield Tx(conn, conn.commit, conn.rollback)
    finally:
        await engine.dispose()


def _async_session_tx(driver: str) -> Callable[[str], Any]:
    @asynccontextmanager
    async def open_tx(dsn: str) -> AsyncIterator[Tx]:
        engine = create_async_engine(_url(dsn, driver))
        try:
            async with AsyncSession(engine) as session:
                yield Tx(session, session.commit, session.rollback)
        finally:
            await engine.dispose()

    return open_tx


ASYNC_KINDS = {
    "asyncpg": asyncpg_tx,
    "psycopg-async": psycopg_async_tx,
    "sqlalchemy-async-connection": sa_async_connection_tx,
    "sqlalchemy-async-session-asyncpg": _async_session_tx("asyncpg"),
    "sqlalchemy-async-session-psycopg": _async_session_tx("psycopg"),
}
SYNC_KINDS = {
    "psycopg": psycopg_sync_tx,
    "sqlalchemy-connection": sa_connection_tx,
    "sqlalchemy-session": sa_session_tx,
}


@pytest.fixture
def sync_client(dsn: str, db: asyncpg.Connection) -> Iterator[jobrunner.SyncClient]:
    with jobrunner.connect_sync(dsn) as client:
        yield client


async def _jobs(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT count(*) FROM jobrunner_jobs"))


async def _check_kind(
    open_tx: Callable[[str], Any],
    insert: Callable[[Any], Awaitable[Job]],
    dsn: str,
    db: asyncpg.Connection,
    daemons: Callable[..., Daemon],
) -> None:
    async with open_tx(dsn) as tx:
        await insert(tx.conn)
        await tx.rollback()
    assert await _jobs(db) == 0

    async with open_tx(dsn) as tx:
        job = await insert(tx.conn)
        assert await _jobs(db) == 0  # not visible before the commit
        await tx.commit()
    assert await _jobs(db) == 1

    await daemons().start().wait_ready()

    async def ran() -> bool:
        return bool(await db.fetchval("SELECT 1 FROM test_executions WHERE job_id = $1", job.id))

    await eventually(ran, timeout_s=20)


@pytest.mark.parametrize("kind", list(ASYNC_KINDS))
async def test_async_client_writes_in_the_callers_transaction(
    kind: str,
    client: jobrunner.Client,
    dsn: str,
    db: asyncpg.Connection,
    daemons: Callable[..., Daemon],
) -> None:
    async def insert(conn: Any) -> Job:
        return await client.insert(record_run.new({"kind": kind}), conn=conn)

    await _check_kind(ASYNC_KINDS[kind], insert, dsn, db, daemons)


@pytest.mark.parametrize("kind", list(SYNC_KINDS))
async def test_sync_client_writes_in_the_callers_transaction(
    kind: str,
    sync_client: jobrunner.SyncClient,
    dsn: str,
    db: asyncpg.Connection,
    daemons: Callable[..., Daemon],
) -> None:
    async def insert(conn: Any) -> Job:
        return sync_client.insert(record_run.new({"kind": kind}), conn=conn)

    await _check_kind(SYNC_KINDS[kind], insert, dsn, db, daemons)


async def test_insert_all_with_unique_jobs_on_a_session(
    sync_client: jobrunner.SyncClient, dsn: str, db: asyncpg.Connection
) -> None:
    unique = record_run.new({"n": 1}, unique=jobrunner.Unique(period=None))
    async with sa_session_tx(dsn) as tx:
        first, again, other = sync_client.insert_all(
            [unique, unique, record_run.new({"n": 2})], conn=tx.conn
        )
        await tx.commit()
    assert again.id == first.id and again.conflict and not other.conflict
    assert await _jobs(db) == 2
