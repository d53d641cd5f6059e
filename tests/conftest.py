"""Shared fixtures: a real PostgreSQL (JOBRUNNER_TEST_DSN, else the local server, else the
embedded one), a migrated database per session, and truncation after each test."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

import jobrunner
from jobrunner.core import cron_sources
from jobrunner.core.config import Settings
from jobrunner.db import connection as _db
from jobrunner.db import migrate as _migrate
from tests.apps.sample import RECORD_TABLE
from tests.helpers import ROOT, Daemon

# A user's own project and the Django project, run as pytest subprocesses (e2e/test_django.py).
collect_ignore = ["user_project", "django_project"]

# The whole suite runs in another schema with JOBRUNNER_SCHEMA=jobs (the daemons and the CLI
# it starts read it too): jobrunner's SQL, written unqualified, must work there unchanged.
SCHEMA = os.environ.get("JOBRUNNER_SCHEMA", "public")

TABLES = (
    "jobrunner_jobs, jobrunner_nodes, jobrunner_queues, jobrunner_control, "
    "jobrunner_control_applied, jobrunner_leader, jobrunner_cron, jobrunner_rate_starts, "
    "jobrunner_partition_files, jobrunner_workflows, jobrunner_job_deps, jobrunner_batches, "
    "jobrunner_queue_slots"
)


def _local_server_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


def server_dsn() -> str:
    """A DSN of a database on a server where tests may create databases."""
    if os.environ.get("JOBRUNNER_TEST_DSN"):
        return os.environ["JOBRUNNER_TEST_DSN"]
    if _local_server_up():
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    return _db.embedded_dsn(ROOT / ".jobrunner" / "test")


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def create_database(name: str) -> str:
    """A fresh empty database `name` on the test server; returns its DSN."""
    admin = await asyncpg.connect(server_dsn())
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return with_database(server_dsn(), name)


@pytest.fixture(scope="session")
def worker_suffix() -> str:
    """Names this session's database: set JOBRUNNER_TEST_DB to run suites side by side."""
    return os.environ.get("JOBRUNNER_TEST_DB", os.environ.get("PYTEST_XDIST_WORKER", "main"))


@pytest.fixture(scope="session")
async def dsn(worker_suffix: str) -> str:
    """The session's migrated database (in the schema JOBRUNNER_SCHEMA names, if any)."""
    url = await create_database(f"jobrunner_test_{worker_suffix}")
    conn = await _db.connect(url, _db.Reach(schema=SCHEMA))
    try:
        await _migrate.migrate(conn, SCHEMA)
        await conn.execute(RECORD_TABLE)
    finally:
        await conn.close()
    return url


@pytest.fixture(scope="session")
def make_database() -> Callable[[str], Awaitable[str]]:
    """Factory for an extra empty database (migration tests)."""
    return create_database


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test database (its jobrunner_* names in SCHEMA); tables are
    emptied after the test."""
    conn = await _db.connect(dsn, _db.Reach(schema=SCHEMA))
    try:
        yield conn
    finally:
        await conn.execute(f"TRUNCATE {TABLES}, test_executions RESTART IDENTITY CASCADE")
        await conn.close()


@pytest.fixture
def settings(dsn: str) -> Settings:
    """Settings with tiny intervals, as the factories below use."""
    return Settings(
        database_url=dsn,
        poll_interval_s=1.0,
        heartbeat_interval_s=0.5,
        node_lease_s=3,
        leader_lease_s=2,
        stage_interval_s=0.1,
        rescue_interval_s=0.5,
        cron_interval_s=0.2,
        control_poll_interval_s=0.5,
        shutdown_grace_s=5,
        pool_size=5,
        schema=SCHEMA,
    )


@pytest.fixture
async def client(db: asyncpg.Connection, settings: Settings) -> AsyncIterator[jobrunner.Client]:
    async with jobrunner.connect(settings=settings) as connected:
        yield connected


@pytest.fixture
def make_runner(client: jobrunner.Client, settings: Settings) -> Callable[..., Any]:
    """`async with make_runner(queues={"default": 2}) as runner:` an in-process daemon."""

    @asynccontextmanager
    async def make(
        queues: dict[str, Any] | None = None, **overrides: Any
    ) -> AsyncIterator[jobrunner.Runner]:
        node = overrides.pop("node", None)
        custom = Settings(
            **{**{f: getattr(settings, f) for f in settings.__dataclass_fields__}, **overrides}
        )
        runner = jobrunner.Runner(client, queues or {"default": 10}, settings=custom, node=node)
        await runner.start()
        try:
            yield runner
        finally:
            await runner.stop(grace=overrides.get("shutdown_grace_s", 5))

    return make


@pytest.fixture
def daemons(dsn: str, db: asyncpg.Connection) -> Iterator[Callable[..., Daemon]]:
    """Factory of subprocess daemons on the test database; all are stopped after the test."""
    started: list[Daemon] = []

    def make(**kwargs: Any) -> Daemon:
        daemon = Daemon(dsn, **kwargs)
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()


@pytest.fixture(autouse=True)
def _declared_crontab(request: pytest.FixtureRequest) -> Iterator[None]:
    """Scheduled triggers that imported test modules declare run only in the tests marked
    `triggers`: every in-process runner of the others sees the configured crontab alone."""
    if request.node.get_closest_marker("triggers") is not None:
        yield
        return
    declared = cron_sources.entries()
    for entry in declared:
        cron_sources.remove(entry.key)
    try:
        yield
    finally:
        for entry in declared:
            cron_sources.add(entry)


def pytest_configure(config: pytest.Config) -> None:
    Path(ROOT / ".jobrunner").mkdir(exist_ok=True)
