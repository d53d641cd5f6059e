"""pytest fixtures for users' test suites (registered through the pytest11 entry point).

Install with `pip install 'jobrunner[testing]'`; the fixtures are then available in every
test, and none of them runs, or touches a database, unless a test asks for it.

- `jobrunner_dsn` (session): the URL of a database with jobrunner's tables migrated.
  `JOBRUNNER_TEST_DSN`, when set, names it: your own test database (where your tables
  live, so that jobs inserted in your transactions work), migrated and with its jobrunner
  tables emptied at the start of the session. Under pytest-xdist it must contain
  `{worker}`, replaced by each worker's id (`gw0`, `gw1`; `main` without xdist), so that
  each worker has a database of its own (created if missing): workers sharing one would
  empty each other's tables. Otherwise a database of its own is created for the session
  (and each xdist worker) on the embedded PostgreSQL (`jobrunner[embedded]`, under
  `.jobrunner/test` in the rootdir) and dropped at the end. To choose differently, define
  a `jobrunner_dsn` fixture in your conftest.py.
- `jobrunner_client`: a connected client in manual testing mode (inserted jobs wait for
  `jobrunner.testing.drain_queue`); the jobrunner tables are emptied after the test.
- `jobrunner_inline_client`: the same in inline mode (each job runs as it is inserted).
- `jobrunner_conn`: a connection of `jobrunner_client`'s pool inside a transaction that is
  rolled back after the test (before the tables are emptied): pass it as `conn=` to
  inserts, assertions and `drain_queue`, and nothing the test did is left behind.
- `jobrunner_sync_client`: a connected `jobrunner.connect_sync()` client for plain `def`
  tests (`jobrunner[psycopg]`); nothing runs its jobs; the tables are emptied afterwards.

The async fixtures run in the event loop of the test that uses them, whatever
pytest-asyncio's mode and loop scopes (`asyncio_default_fixture_loop_scope`,
`asyncio_default_test_loop_scope`, a marker's `loop_scope`). Emptying the tables waits at
most `RESET_LOCK_TIMEOUT` for a lock: a transaction still open at teardown fails the test
with a message naming it, instead of hanging the run.

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
import types
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from jobrunner.client import Client, TestingMode, connect
from jobrunner.core.config import Settings
from jobrunner.core.errors import ConfigError, JobRunnerError
from jobrunner.db import connection as _db
from jobrunner.db import migrate as _migrate
from jobrunner.db import queries as _queries
from jobrunner.sync_client import SyncClient, connect_sync

ENV_DSN = "JOBRUNNER_TEST_DSN"
WORKER_PLACEHOLDER = "{worker}"
RESET_LOCK_TIMEOUT = "5s"
LOOP_SCOPES = ("function", "class", "module", "package", "session")
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
    """Migrate the database and empty its jobrunner tables, in the schema the project's
    settings name (config file or JOBRUNNER_SCHEMA)."""
    schema = Settings.load().schema
    conn = await _db.connect(dsn, _db.Reach(schema=schema))
    try:
        await _migrate.migrate(conn, schema)
        await _queries.reset_tables(conn)
    finally:
        await conn.close()


async def _create_missing(dsn: str) -> None:
    """Create the database `dsn` names if it does not exist (a worker's own), then prepare it."""
    name = urlsplit(dsn).path.lstrip("/")
    server = urlunsplit(urlsplit(dsn)._replace(path="/postgres"))
    conn = await _db.connect(server)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await _queries.create_database(conn, name)
    finally:
        await conn.close()
    await _prepare(dsn)


def _given_dsn(given: str) -> str:
    """JOBRUNNER_TEST_DSN for this worker: `{worker}` replaced; refused under xdist without it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if WORKER_PLACEHOLDER in given:
        return given.replace(WORKER_PLACEHOLDER, worker or "main")
    if worker is not None:
        pytest.fail(
            f"{ENV_DSN} names one database for every pytest-xdist worker, and each would "
            f"empty the others' jobs; put {WORKER_PLACEHOLDER} in its database name "
            f"(e.g. .../app_test_{WORKER_PLACEHOLDER}) to give each worker its own",
            pytrace=False,
        )
    return given


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
        dsn = _given_dsn(given)
        _run(_create_missing(dsn) if dsn != given else _prepare(dsn))
        yield dsn
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
    settings = Settings(database_url=dsn, pool_size=4, schema=Settings.load().schema)
    async with connect(dsn, testing=testing, settings=settings) as client:
        try:
            yield client
        finally:
            await _reset(client)


async def _reset(client: Client) -> None:
    """Empty the tables, waiting for a lock at most RESET_LOCK_TIMEOUT; a transaction that
    still holds one fails the test with a message naming it."""
    async with client.pool.acquire() as conn:
        try:
            async with conn.transaction():
                await _queries.set_lock_timeout(conn, RESET_LOCK_TIMEOUT)
                await _queries.reset_tables(conn)
        except asyncpg.LockNotAvailableError:
            holders = await _queries.lock_holders(conn)
        else:
            return
    named = "; ".join(
        f"pid {h['pid']} ({h['state']}, application {h['application_name']!r}, transaction "
        f"open since {h['xact_start']}, last statement: {' '.join(str(h['query']).split())!r})"
        for h in holders
    )
    pytest.fail(
        f"jobrunner could not empty its tables after the test: another transaction holds "
        f"them after {RESET_LOCK_TIMEOUT}: {named or 'it has ended since'}; roll back or "
        "close your test's transaction before jobrunner_client's teardown (make its "
        "fixture depend on jobrunner_client, or use the jobrunner_conn fixture)",
        pytrace=False,
    )


def _loop_scope(request: pytest.FixtureRequest) -> str:
    """The scope of the event loop the requesting test runs in (pytest-asyncio's rule)."""
    marker = request.node.get_closest_marker("asyncio")
    scope = marker.kwargs.get("loop_scope") or marker.kwargs.get("scope") if marker else None
    if not scope:
        try:
            scope = request.config.getini("asyncio_default_test_loop_scope")
        except ValueError:  # a pytest-asyncio without that option
            scope = None
    return str(scope) if scope in LOOP_SCOPES else "function"


def _in_test_loop(name: str, build: Any) -> Any:
    """A fixture `name` whose async body `build` runs in the requesting test's event loop.

    pytest-asyncio runs an async fixture in the loop of its own loop scope, which is the
    test's only when the two settings agree; this one picks, for each test, a variant
    of `build` declared with the test's loop scope.
    """
    try:
        import pytest_asyncio
    except ImportError:

        def missing(*_args: Any, **_kwargs: Any) -> None:
            pytest.fail(
                f"{name} needs pytest-asyncio: pip install 'jobrunner[testing]'", pytrace=False
            )

        return pytest.fixture(name=name)(missing)
    for scope in LOOP_SCOPES:
        variant = f"_{name}_{scope}_loop"
        # A copy of the function for each: pytest-asyncio marks the function object itself.
        copy = types.FunctionType(build.__code__, build.__globals__, variant, None, None)
        copy.__doc__ = build.__doc__
        globals()[variant] = pytest_asyncio.fixture(copy, name=variant, loop_scope=cast(Any, scope))

    def pick(request: pytest.FixtureRequest) -> Any:
        return request.getfixturevalue(f"_{name}_{_loop_scope(request)}_loop")

    pick.__doc__ = build.__doc__
    return pytest.fixture(name=name)(pick)


async def _manual_client(jobrunner_dsn: str) -> AsyncIterator[Client]:
    """A client in manual mode: jobs wait to be drained; tables emptied afterwards."""
    async with _client(jobrunner_dsn, "manual") as client:
        yield client


async def _inline_client(jobrunner_dsn: str) -> AsyncIterator[Client]:
    """A client in inline mode: each job runs as it is inserted; tables emptied afterwards."""
    async with _client(jobrunner_dsn, "inline") as client:
        yield client


async def _transaction(jobrunner_client: Client) -> AsyncIterator[Any]:
    """A connection inside a transaction rolled back after the test (before the tables
    are emptied): pass it as `conn=` to inserts, assertions and drain_queue."""
    async with jobrunner_client.pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            yield conn
        finally:
            await transaction.rollback()


jobrunner_client = _in_test_loop("jobrunner_client", _manual_client)
jobrunner_inline_client = _in_test_loop("jobrunner_inline_client", _inline_client)
jobrunner_conn = _in_test_loop("jobrunner_conn", _transaction)


@pytest.fixture
def jobrunner_sync_client(jobrunner_dsn: str) -> Iterator[SyncClient]:
    """A sync client for plain `def` tests: jobs wait (drain them with `jobrunner drain` or
    an async test's `drain_queue`); tables emptied afterwards.

    Example:
        >>> def test_signup_enqueues(jobrunner_sync_client):
        ...     signup(jobrunner_sync_client, "ada@example.com")
        ...     assert jobrunner_sync_client.list_jobs(worker="app.send_welcome")
    """
    settings = Settings(database_url=jobrunner_dsn, pool_size=2, schema=Settings.load().schema)
    with connect_sync(jobrunner_dsn, settings=settings) as client:
        try:
            yield client
        finally:
            client.reset_tables()
