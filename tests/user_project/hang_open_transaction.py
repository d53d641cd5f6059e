"""A transaction fixture set up before jobrunner_client, so still open at its teardown."""

from __future__ import annotations

import asyncpg
import pytest
import pytest_asyncio
from myapp import signup


@pytest_asyncio.fixture
async def own_transaction(jobrunner_dsn):
    conn = await asyncpg.connect(jobrunner_dsn, server_settings={"application_name": "users-db"})
    transaction = conn.transaction()
    await transaction.start()
    yield conn
    await transaction.rollback()
    await conn.close()


@pytest.mark.asyncio
async def test_signup(own_transaction, jobrunner_client):
    await signup(jobrunner_client, own_transaction, "late@example.com")
