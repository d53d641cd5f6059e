"""conn= refuses what would write a job outside the caller's transaction or on another
database, with one clear error, and writes nothing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator

import asyncpg
import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import jobrunner
from jobrunner import InvalidConnection
from jobrunner.db import migrate as _migrate
from tests.apps.sample import noop
from tests.helpers import ROOT


@pytest.fixture
def sync_client(dsn: str, db: asyncpg.Connection) -> Iterator[jobrunner.SyncClient]:
    with jobrunner.connect_sync(dsn) as client:
        yield client


async def _jobs(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT count(*) FROM jobrunner_jobs"))


async def test_asyncpg_connection_to_the_sync_client(
    sync_client: jobrunner.SyncClient, dsn: str, db: asyncpg.Connection
) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            with pytest.raises(InvalidConnection, match=r"async client \(jobrunner\.connect\)"):
                sync_client.insert(noop.new({}), conn=conn)
    finally:
        await conn.close()
    assert await _jobs(db) == 0


async def test_sync_psycopg_connection_to_the_async_client(
    client: jobrunner.Client, dsn: str, db: asyncpg.Connection
) -> None:
    with psycopg.connect(dsn) as conn:
        with pytest.raises(InvalidConnection, match=r"sync client \(jobrunner\.connect_sync\)"):
            await client.insert(noop.new({}), conn=conn)
        conn.commit()
    assert await _jobs(db) == 0


async def test_session_on_another_database(
    sync_client: jobrunner.SyncClient,
    client: jobrunner.Client,
    db: asyncpg.Connection,
    make_database: Callable[[str], Awaitable[str]],
) -> None:
    other = await make_database("jobrunner_test_other_sync_enqueue")
    conn = await asyncpg.connect(other)
    try:
        await _migrate.migrate(conn)
        engine = create_engine(other.replace("postgresql://", "postgresql+psycopg://"))
        with Session(engine) as session:
            with pytest.raises(InvalidConnection, match="not the client's database"):
                sync_client.insert(noop.new({}), conn=session)
            session.commit()
        engine.dispose()
        async_engine = create_async_engine(other.replace("postgresql://", "postgresql+asyncpg://"))
        async with AsyncSession(async_engine) as async_session:
            with pytest.raises(InvalidConnection, match="not the client's database"):
                await client.insert(noop.new({}), conn=async_session)
            await async_session.commit()
        await async_engine.dispose()
        assert await conn.fetchval("SELECT count(*) FROM jobrunner_jobs") == 0
    finally:
        await conn.close()
    assert await _jobs(db) == 0


async def test_autocommit_sqlalchemy_connection(
    sync_client: jobrunner.SyncClient, dsn: str, db: asyncpg.Connection
) -> None:
    engine = create_engine(
        dsn.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with engine.connect() as conn:
        with pytest.raises(InvalidConnection, match="AUTOCOMMIT"):
            sync_client.insert(noop.new({}), conn=conn)
    engine.dispose()
    assert await _jobs(db) == 0


async def test_closed_connections(
    sync_client: jobrunner.SyncClient, client: jobrunner.Client, dsn: str, db: asyncpg.Connection
) -> None:
    conn = psycopg.connect(dsn)
    conn.close()
    with pytest.raises(InvalidConnection, match="closed"):
        sync_client.insert(noop.new({}), conn=conn)
    aconn = await psycopg.AsyncConnection.connect(dsn)
    await aconn.close()
    with pytest.raises(InvalidConnection, match="closed"):
        await client.insert(noop.new({}), conn=aconn)
    pg = await asyncpg.connect(dsn)
    await pg.close()
    with pytest.raises(InvalidConnection, match="closed"):
        await client.insert(noop.new({}), conn=pg)
    async with client.pool.acquire() as pooled:
        pass
    with pytest.raises(InvalidConnection, match="released back to the pool"):
        await client.insert(noop.new({}), conn=pooled)
    engine = create_engine(dsn.replace("postgresql://", "postgresql+psycopg://"))
    sa_conn = engine.connect()
    sa_conn.close()
    with pytest.raises(InvalidConnection, match="closed"):
        sync_client.insert(noop.new({}), conn=sa_conn)
    engine.dispose()
    assert await _jobs(db) == 0


async def test_failed_transaction(
    sync_client: jobrunner.SyncClient, dsn: str, db: asyncpg.Connection
) -> None:
    with psycopg.connect(dsn) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1 / 0")
        with pytest.raises(InvalidConnection, match="roll it back"):
            sync_client.insert(noop.new({}), conn=conn)
        conn.rollback()
    assert await _jobs(db) == 0


async def test_not_a_connection(
    sync_client: jobrunner.SyncClient, client: jobrunner.Client
) -> None:
    with pytest.raises(InvalidConnection, match="conn= takes a psycopg Connection"):
        sync_client.insert(noop.new({}), conn="postgresql://localhost/app")
    with pytest.raises(InvalidConnection, match="conn= takes an asyncpg connection"):
        await client.insert(noop.new({}), conn=42)


async def test_the_sqlalchemy_session_commits_what_it_began(
    sync_client: jobrunner.SyncClient, dsn: str, db: asyncpg.Connection
) -> None:
    engine = create_engine(dsn.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:  # no statement yet: the insert begins its transaction
        assert not conn.in_transaction()
        sync_client.insert(noop.new({}), conn=conn)
        assert conn.in_transaction()
        assert conn.execute(text("SELECT count(*) FROM jobrunner_jobs")).scalar() == 1
    engine.dispose()
    assert await _jobs(db) == 0  # closed without commit: rolled back


@pytest.mark.parametrize(
    ("module", "extra"),
    [
        ("jobrunner.contrib.sqlalchemy", "sqlalchemy"),
        ("jobrunner.contrib.django", "django"),
        ("jobrunner.db.psycopg", "psycopg"),
    ],
)
def test_an_integration_without_its_extra_names_it(module: str, extra: str) -> None:
    library = {"sqlalchemy": "sqlalchemy", "django": "django", "psycopg": "psycopg"}[extra]
    code = (
        f"import sys; sys.modules[{library!r}] = None\n"
        "import jobrunner\n"
        "try:\n"
        f"    __import__({module!r})\n"
        "except jobrunner.MissingExtra as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert f"pip install 'jobrunner[{extra}]'" in result.stdout


def test_connect_sync_without_psycopg_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "import jobrunner\n"
        "try:\n"
        "    jobrunner.connect_sync('postgresql://localhost/x').__enter__()\n"
        "except jobrunner.MissingExtra as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "pip install 'jobrunner[psycopg]'" in result.stdout
