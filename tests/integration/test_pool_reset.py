"""The pool skips asyncpg's reset round trip after jobrunner's own statements only."""

from __future__ import annotations

from typing import Any

import pytest

from jobrunner.db import connection as _db
from jobrunner.db import queries as _queries


async def test_session_state_set_through_the_pool_never_leaks(settings: Any, db: Any) -> None:
    pool = await _db.create_pool(settings.database_url, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("SET application_name = 'leaky'")
            await conn.execute("LISTEN leaky_channel")
        await _queries.get_job(pool, 1)  # a jobrunner statement on the same connection
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW application_name") == "jobrunner"
            assert await conn.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0
        await pool.execute("SET application_name = 'leaky'")  # pool.execute is not jobrunner's
        assert await pool.fetchval("SHOW application_name") == "jobrunner"
    finally:
        await _db.close_pool(pool)


async def test_jobrunner_statements_skip_the_reset_query(
    settings: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real = _db.PooledConnection.get_reset_query

    def counting(self: _db.PooledConnection) -> str:
        nonlocal calls
        calls += 1
        return str(real(self))

    monkeypatch.setattr(_db.PooledConnection, "get_reset_query", counting)
    pool = await _db.create_pool(settings.database_url, max_size=1)
    try:
        await _queries.get_job(pool, 1)
        await _queries.get_job(pool, 2)
        assert calls == 0
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
        assert calls == 1
    finally:
        await _db.close_pool(pool)


async def test_a_failed_statement_gets_the_full_reset(settings: Any, db: Any) -> None:
    pool = await _db.create_pool(settings.database_url, max_size=1)
    try:
        async with pool.acquire() as conn:
            raw = conn._con
        assert raw.take_statements_only() is False
        try:
            await _db.fetch(pool, "SELECT 1/0")
        except Exception:
            pass
        assert raw.take_statements_only() is False
        await _db.fetch(pool, "SELECT 1")
        assert raw.take_statements_only() is False  # taken by the release already
    finally:
        await _db.close_pool(pool)
