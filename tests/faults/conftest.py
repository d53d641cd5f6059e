"""Fixtures of the fault suite: the executions ledger, a PostgreSQL server a test owns,
and the figures each scenario prints at the end of the run."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg
import pytest

from jobrunner.db import migrate as _migrate
from tests.faults import ledger
from tests.faults._load import connect
from tests.faults.ledger import Figures
from tests.faults.pgserver import PgServer
from tests.helpers import Daemon

FIGURES: list[str] = []


def report(figures: Figures) -> Figures:
    """Keep the scenario's summary line for the end of the run (and show it at once on -s)."""
    line = figures.line()
    FIGURES.append(line)
    print(f"\n[faults] {line}", file=sys.stderr)
    return figures


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("fault figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
async def faults_dsn(dsn: str) -> str:
    """The session database (on the suite's server) with the ledger installed."""
    conn = await connect(dsn)
    try:
        await ledger.install(conn, audit=False)
    finally:
        await conn.close()
    return dsn


@pytest.fixture
async def fdb(faults_dsn: str, db: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the session database, audited during the test; jobs and ledger are
    emptied after it, and the audit trigger removed (other suites share the database)."""
    conn = await connect(faults_dsn)
    try:
        await ledger.install(conn)
        await ledger.reset(conn)
        yield conn
    finally:
        await ledger.uninstall_audit(conn)
        await ledger.reset(conn)
        await conn.close()


@pytest.fixture
async def own_server() -> AsyncIterator[PgServer]:
    """A fresh PostgreSQL this test may stop, crash and restart; destroyed afterwards."""
    server = PgServer()
    try:
        await asyncio.to_thread(server.init)
        await asyncio.to_thread(server.start)
        yield server
    finally:
        await asyncio.to_thread(server.destroy)


async def prepare_database(server: PgServer, name: str = "jobrunner") -> None:
    """Create, migrate and equip a database on `server`."""
    admin = await connect(server.dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await connect(server.dsn(name))
    try:
        await _migrate.migrate(conn)
        await ledger.install(conn)
    finally:
        await conn.close()


@pytest.fixture
def fault_daemons() -> Iterator[Callable[..., Daemon]]:
    """Factory of subprocess daemons running the fault workers; all are killed afterwards."""
    started: list[Daemon] = []

    def make(dsn: str, **kwargs: Any) -> Daemon:
        kwargs.setdefault("app", ("tests.apps.faults_workers",))
        kwargs.setdefault("queues", "faults:20")
        daemon = Daemon(dsn, **kwargs)
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()
        daemon.log_path.unlink(missing_ok=True)
