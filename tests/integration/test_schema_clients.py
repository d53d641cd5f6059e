"""Every way in honours `schema`: the async client and its `conn=` (asyncpg, psycopg), the
sync client and its `conn=`, and the testing helpers on a test's own connection."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import psycopg
import pytest

import jobrunner
from jobrunner.core.config import Settings
from jobrunner.core.errors import ConfigError, SchemaMissing
from jobrunner.db import connection as _db
from jobrunner.db import migrate as _migrate
from jobrunner.testing import assert_enqueued
from tests.apps import sample
from tests.conftest import create_database

SCHEMA = "app_jobs"


@pytest.fixture
async def url(worker_suffix: str) -> AsyncIterator[str]:
    created = await create_database(f"jobrunner_test_{worker_suffix}_clients")
    conn = await _db.connect(created, _db.Reach(schema=SCHEMA))
    try:
        await _migrate.migrate(conn, SCHEMA)
    finally:
        await conn.close()
    yield created


async def rows(url: str) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(url)
    try:
        found = await conn.fetch(f"SELECT worker, args->>'via' AS via FROM {SCHEMA}.jobrunner_jobs")
        assert await conn.fetchval("SELECT to_regclass('public.jobrunner_jobs')") is None
        return sorted((r["worker"], r["via"]) for r in found)
    finally:
        await conn.close()


async def test_every_client_and_connection_kind_writes_in_the_schema(url: str) -> None:
    settings = Settings(database_url=url, schema=SCHEMA)
    async with jobrunner.connect(settings=settings) as client:
        await client.insert(sample.noop.new({"via": "pool"}))
        own = await asyncpg.connect(url)
        try:
            async with own.transaction():
                await client.insert(sample.noop.new({"via": "asyncpg"}), conn=own)
                await assert_enqueued(client, worker=sample.noop, args={"via": "asyncpg"}, conn=own)
        finally:
            await own.close()
        async with await psycopg.AsyncConnection.connect(url) as aconn, aconn.transaction():
            await client.insert(sample.noop.new({"via": "psycopg-async"}), conn=aconn)
    with jobrunner.connect_sync(settings=settings) as sync:
        sync.insert(sample.noop.new({"via": "sync"}))
        with psycopg.connect(url) as conn, conn.transaction():
            sync.insert(sample.noop.new({"via": "psycopg"}), conn=conn)
        assert sync.get_job(1).args == {"via": "pool"}
    assert await rows(url) == sorted(
        ("sample.noop", via) for via in ("pool", "asyncpg", "psycopg-async", "sync", "psycopg")
    )


async def test_a_client_of_another_schema_finds_no_tables_there(url: str) -> None:
    with pytest.raises(SchemaMissing, match="jobrunner tables missing in schema 'elsewhere'"):
        async with jobrunner.connect(settings=Settings(database_url=url, schema="elsewhere")):
            pass


async def test_the_schemas_functions_work_from_any_search_path(url: str) -> None:
    conn = await asyncpg.connect(url)  # search_path: public, where no jobrunner table is
    heard: list[str] = []
    try:
        await conn.add_listener(f"{SCHEMA}.jobrunner_insert", lambda *a: heard.append(a[3]))
        job_id = await conn.fetchval(f"SELECT {SCHEMA}.jobrunner_insert_job('w', queue => 'q')")
        assert (
            await conn.fetchval(f"SELECT queue FROM {SCHEMA}.jobrunner_jobs WHERE id = $1", job_id)
            == "q"
        )
        await conn.execute("SELECT 1")
        assert heard == ["q"]
    finally:
        await conn.close()


async def test_a_plain_pool_of_the_callers_is_refused_in_a_schema(url: str) -> None:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        settings = Settings(database_url=url, schema=SCHEMA)
        with pytest.raises(ConfigError, match="needs jobrunner's own pool"):
            async with jobrunner.connect(settings=settings, pool=pool):
                pass
        own = await _db.create_pool(url, max_size=1, reach=_db.Reach(schema=SCHEMA))
        try:
            async with jobrunner.connect(settings=settings, pool=own) as client:
                assert (await client.insert(sample.noop.new({}))).id == 1
        finally:
            await own.close()
    finally:
        await pool.close()
