"""pytest fixtures for users' test suites (registered through the pytest11 entry point).

Install with `pip install 'jobrunner[testing]'`; the fixtures are then available in every
test, and none of them runs, or touches a database, unless a test asks for it.

- `jobrunner_dsn` (session): the URL of a database with jobrunner's tables migrated.
  `JOBRUNNER_TEST_DSN`, when set, names it: your own test database (where your tables
  live, so that jobs inserted in your transactions work), migrated and with its jobrunner
  tables emptied at the start of the session. Otherwise a database of its own is created
  for the session on the embedded PostgreSQL (`jobrunner[embedded]`, under
  `.jobrunner/test` in the rootdir) and dropped at the end. To choose differently, define a
  `jobrunner_dsn` fixture in your conftest.py. With pytest-xdist, give each worker its own.
- `jobrunner_client`: a connected client in manual testing mode (inserted jobs wait for
  `jobrunner.testing.drain_queue`); the jobrunner tables are emptied after the test.
- `jobrunner_inline_client`: the same in inline mode (each job runs as it is inserted).

Example:
    >>> async def test_signup_sends_welcome(jobrunner_client):
    ...     await signup(jobrunner_client, "ada@example.com")
    ...     await assert_enqueued(jobrunner_client, worker=send_welcome)
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest

from jobrunner.client import Client, TestingMode, connect
from jobrunner.core.config import Settings
from jobrunner.core.errors import ConfigError, JobRunnerError
from jobrunner.db import connection as _db
from jobrunner.db import migrate as _migrate
from jobrunner.db import queries as _queries

ENV_DSN = "JOBRUNNER_TEST_DSN"
T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to the end in a thread of its own, whatever event loop the test uses;
    a jobrunner error fails the tests that asked for the database with its one line."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="jobrunner-test-setup")
    thread.start()
    thread.join()
    if isinstance(box.get("error"), JobRunnerError):
        pytest.fail(f"jobrunner_dsn: {box['error']}", pytrace=False)
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


async def _prepare(dsn: str) -> None:
    """Migrate the database and empty its jobrunner tables."""
    conn = await _db.connect(dsn)
    try:
        await _migrate.migrate(conn)
        await _queries.reset_tables(conn)
    finally:
        await conn.close()


async def _create(server_dsn: str, name: str) -> str:
    conn = await _db.connect(server_dsn)
    try:
        await _queries.drop_database(conn, name)
        await _queries.create_database(conn, name)
    finally:
        await conn.close()
    dsn = urlunsplit(urlsplit(server_dsn)._replace(path=f"/{name}"))
    await _prepare(dsn)
    return dsn


async def _drop(server_dsn: str, name: str) -> None:
    conn = await _db.connect(server_dsn)
    try:
        await _queries.drop_database(conn, name)
    finally:
        await conn.close()


def _embedded_server(rootpath: Path) -> str:
    try:
        return _db.embedded_dsn(rootpath / ".jobrunner" / "test")
    except ConfigError:
        pytest.fail(
            f"jobrunner_dsn needs a database: set {ENV_DSN} to one the tests may use, "
            "or install 'jobrunner[embedded]'",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def jobrunner_dsn(pytestconfig: pytest.Config) -> Iterator[str]:
    """The URL of a migrated database for the session (see the module's docstring)."""
    given = os.environ.get(ENV_DSN)
    if given:
        _run(_prepare(given))
        yield given
        return
    server = _embedded_server(pytestconfig.rootpath)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"jobrunner_test_{worker}_{os.getpid()}_{secrets.token_hex(2)}"
    dsn = _run(_create(server, name))
    try:
        yield dsn
    finally:
        _run(_drop(server, name))


@asynccontextmanager
async def _client(dsn: str, testing: TestingMode) -> AsyncIterator[Client]:
    settings = Settings(database_url=dsn, pool_size=4)
    async with connect(dsn, testing=testing, settings=settings) as client:
        try:
            yield client
        finally:
            await _queries.reset_tables(client.pool)


def _async_fixture(function: Any) -> Any:
    """pytest-asyncio's fixture, or without it one that fails saying what to install."""
    try:
        import pytest_asyncio
    except ImportError:

        def missing(*_args: Any, **_kwargs: Any) -> None:
            pytest.fail(
                f"{function.__name__} needs pytest-asyncio: pip install 'jobrunner[testing]'",
                pytrace=False,
            )

        return pytest.fixture(name=function.__name__)(missing)
    return pytest_asyncio.fixture(function)


@_async_fixture
async def jobrunner_client(jobrunner_dsn: str) -> AsyncIterator[Client]:
    """A client in manual mode: jobs wait to be drained; tables emptied afterwards."""
    async with _client(jobrunner_dsn, "manual") as client:
        yield client


@_async_fixture
async def jobrunner_inline_client(jobrunner_dsn: str) -> AsyncIterator[Client]:
    """A client in inline mode: each job runs as it is inserted; tables emptied afterwards."""
    async with _client(jobrunner_dsn, "inline") as client:
        yield client
