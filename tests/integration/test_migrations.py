"""Migrations: an empty database, a no-op re-run, concurrent runs, an upgrade from the previous
version, an edited or failing migration, and the schema check clients make."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

import jobrunner
from jobrunner import MigrationError, SchemaMissing, SchemaOutdated
from jobrunner.db import migrate as _migrate
from jobrunner.db.migrate import Migration
from tests.conftest import with_database

MISSING = "jobrunner tables missing, run 'jobrunner migrate'"
TABLES = {
    "jobrunner_jobs",
    "jobrunner_nodes",
    "jobrunner_queues",
    "jobrunner_control",
    "jobrunner_control_applied",
    "jobrunner_leader",
    "jobrunner_cron",
    "jobrunner_migrations",
    "jobrunner_workflows",
    "jobrunner_job_deps",
    "jobrunner_batches",
    "jobrunner_queue_slots",
}


@pytest.fixture
async def fresh(
    make_database: Callable[[str], Awaitable[str]], worker_suffix: str
) -> AsyncIterator[str]:
    """An empty database of this test's own."""
    name = f"jobrunner_test_{worker_suffix}_mig_{os.urandom(3).hex()}"
    dsn = await make_database(name)
    yield dsn
    admin = await asyncpg.connect(with_database(dsn, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE tablename LIKE 'jobrunner_%'")
    return {r["tablename"] for r in rows}


async def test_migrate_an_empty_database_then_no_op(fresh: str) -> None:
    conn = await asyncpg.connect(fresh)
    try:
        assert await _migrate.schema_version(conn) == 0
        with pytest.raises(SchemaMissing, match=MISSING):
            await _migrate.verify(conn)
        applied = await _migrate.migrate(conn)
        assert [m.version for m in applied] == [m.version for m in _migrate.available()]
        assert TABLES <= await tables(conn)
        assert await _migrate.schema_version(conn) == _migrate.LATEST
        await _migrate.verify(conn)
        rows = await conn.fetch(
            "SELECT version, name, checksum FROM jobrunner_migrations ORDER BY version"
        )
        assert [(r["version"], r["name"], r["checksum"]) for r in rows] == [
            (m.version, m.name, m.checksum) for m in _migrate.available()
        ]
        assert await _migrate.migrate(conn) == []
        assert await conn.fetchval("SELECT count(*) FROM jobrunner_migrations") == len(rows)
        # the jobs table is vacuumed at a fixed number of dead rows (migration 11)
        options = await conn.fetchval(
            "SELECT reloptions FROM pg_class WHERE oid = 'jobrunner_jobs'::regclass"
        )
        assert {
            "autovacuum_vacuum_scale_factor=0.0",
            "autovacuum_vacuum_threshold=10000",
            "autovacuum_vacuum_insert_scale_factor=0.0",
            "autovacuum_vacuum_insert_threshold=100000",
        } == set(options)
    finally:
        await conn.close()


async def test_concurrent_migrations_apply_each_file_once(fresh: str) -> None:
    conns = [await asyncpg.connect(fresh) for _ in range(4)]
    try:
        results = await asyncio.gather(*(_migrate.migrate(c) for c in conns))
        applied = sorted(m.version for result in results for m in result)
        assert applied == [m.version for m in _migrate.available()]
        assert sum(bool(result) for result in results) == 1
        assert await _migrate.schema_version(conns[0]) == _migrate.LATEST
    finally:
        for conn in conns:
            await conn.close()


async def test_upgrade_from_the_previous_version(fresh: str) -> None:
    migrations = _migrate.available()
    conn = await asyncpg.connect(fresh)
    try:
        for migration in migrations[:-1]:  # a database as the previous release left it
            await conn.execute(migration.sql)
        await conn.execute(_migrate._CREATE_TABLE)
        await conn.executemany(
            "INSERT INTO jobrunner_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            [(m.version, m.name, m.checksum) for m in migrations[:-1]],
        )
        if len(migrations) > 1:
            with pytest.raises(SchemaOutdated, match="run 'jobrunner migrate'"):
                await _migrate.verify(conn)
        applied = await _migrate.migrate(conn)
        assert [m.version for m in applied] == [migrations[-1].version]
        await _migrate.verify(conn)
    finally:
        await conn.close()


async def test_an_edited_migration_is_refused(fresh: str) -> None:
    conn = await asyncpg.connect(fresh)
    try:
        await _migrate.migrate(conn)
        await conn.execute("UPDATE jobrunner_migrations SET checksum = 'edited' WHERE version = 1")
        with pytest.raises(
            MigrationError,
            match="migration '0001_initial' was changed after it "
            "was applied; shipped migrations must never be",
        ):
            await _migrate.migrate(conn)
    finally:
        await conn.close()


async def test_a_failing_migration_leaves_nothing_half_written(
    fresh: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = _migrate.available()
    broken = Migration(999, "0999_broken", "CREATE TABLE jobrunner_half (id int);\nSELECT 1 / 0;")
    monkeypatch.setattr(_migrate, "available", lambda: [*shipped, broken])
    conn = await asyncpg.connect(fresh)
    try:
        with pytest.raises(MigrationError, match="'0999_broken' failed: division by zero"):
            await _migrate.migrate(conn)
        assert await tables(conn) == set()  # the shipped ones rolled back with it
        assert await _migrate.schema_version(conn) == 0
    finally:
        await conn.close()


async def test_a_newer_schema_is_accepted(fresh: str) -> None:
    """A database migrated by a newer jobrunner still serves this one (rolling deploys)."""
    conn = await asyncpg.connect(fresh)
    try:
        await _migrate.migrate(conn)
        await conn.execute(
            "INSERT INTO jobrunner_migrations (version, name, checksum) "
            "VALUES (9999, '9999_future', 'x')"
        )
        assert await _migrate.migrate(conn) == []
        await _migrate.verify(conn)
    finally:
        await conn.close()


async def test_client_refuses_a_missing_or_outdated_schema(
    fresh: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SchemaMissing, match=MISSING):
        async with jobrunner.connect(fresh):
            pass
    conn = await asyncpg.connect(fresh)
    try:
        await _migrate.migrate(conn)
    finally:
        await conn.close()
    monkeypatch.setattr(_migrate, "LATEST", _migrate.LATEST + 1)
    with pytest.raises(
        SchemaOutdated,
        match=f"the jobrunner schema is at version "
        f"{_migrate.LATEST - 1} but this jobrunner needs "
        f"{_migrate.LATEST}, run 'jobrunner migrate'",
    ):
        async with jobrunner.connect(fresh):
            pass
