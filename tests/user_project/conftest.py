from __future__ import annotations

import asyncio
import threading

import asyncpg
import pytest
from myapp import TABLES


@pytest.fixture(scope="session", autouse=True)
def app_tables(jobrunner_dsn: str) -> None:
    """The application's own tables, next to jobrunner's in the test database."""

    async def create() -> None:
        conn = await asyncpg.connect(jobrunner_dsn)
        try:
            await conn.execute(TABLES)
        finally:
            await conn.close()

    thread = threading.Thread(target=lambda: asyncio.run(create()))
    thread.start()
    thread.join()
