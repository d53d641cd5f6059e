"""Load for the fault scenarios: an inserter that keeps going through outages, and polls
that open a fresh connection each time (the server may have restarted in between)."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

import jobrunner
from tests.apps.faults_workers import Record
from tests.helpers import Daemon

# Connections the tests open carry this name, so that a test can terminate every other
# session of its database (the daemons') and leave its own alone.
TEST_APP = "jobrunner-faults-test"


async def connect(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, server_settings={"application_name": TEST_APP})


async def fetchval(dsn: str, query: str, *args: Any) -> Any:
    """One query on a fresh connection; None when the server cannot answer right now."""
    try:
        conn = await asyncio.wait_for(connect(dsn), 5)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return None
    try:
        return await conn.fetchval(query, *args)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return None
    finally:
        conn.terminate()


async def completed(dsn: str) -> int | None:
    return await fetchval(dsn, "SELECT count(*) FROM jobrunner_jobs WHERE state = 'completed'")


async def wait_progress(dsn: str, more_than: int, timeout_s: float = 30.0) -> int:
    """Until more than `more_than` jobs are completed; returns the count."""
    from tests.helpers import eventually

    async def moved() -> int | None:
        n = await completed(dsn)
        return n if n is not None and n > more_than else None

    result: int = await eventually(moved, timeout_s=timeout_s, interval_s=0.1)
    return result


async def executing_on(conn: asyncpg.Connection, node: str) -> int:
    """How many jobs are executing under `node` (frozen once it is dead, until rescued)."""
    n: int = await conn.fetchval(
        "SELECT count(*) FROM jobrunner_jobs WHERE state = 'executing' AND attempted_by[1] = $1",
        node,
    )
    return n


async def ran_on(conn: asyncpg.Connection, node: str, at_least: int) -> bool:
    """`node` has recorded at least `at_least` executions (for `eventually`)."""
    n = await conn.fetchval("SELECT count(*) FROM fault_executions WHERE node = $1", node)
    assert n >= at_least, f"{n} executions on {node} so far"
    return True


async def listening_again(daemons: Sequence[Daemon], reconnects: int) -> bool:
    """Every daemon is alive and its listener has reconnected `reconnects` times."""
    for daemon in daemons:
        assert daemon.proc is not None and daemon.proc.poll() is None, daemon.output()[-3000:]
        assert len(daemon.events("notifier.reconnected")) >= reconnects
    return True


@dataclass
class Inserter:
    """Inserts batches of `faults.record` jobs until stopped, through errors.

    Each job carries a key; a batch whose insert returned is `confirmed`, one whose insert
    raised is `ambiguous` (it may have committed before the connection went).
    """

    client: jobrunner.Client
    batch: int = 50
    max_jobs: int = 10_000
    rate: float = 500.0  # jobs per second
    sleep_s: tuple[float, float] = (0.0, 0.1)
    confirmed: set[str] = field(default_factory=set)
    ambiguous: set[str] = field(default_factory=set)
    errors: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def start(self) -> Inserter:
        self._task = asyncio.create_task(self._loop(), name="faults.inserter")
        return self

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    @property
    def attempted(self) -> int:
        return len(self.confirmed) + len(self.ambiguous)

    async def _loop(self) -> None:
        rng = random.Random(7)
        seq = itertools.count()
        while not self._stop.is_set() and self.attempted < self.max_jobs:
            keys = [f"k{next(seq)}" for _ in range(self.batch)]
            jobs = [
                Record.new({"key": k, "sleep": round(rng.uniform(*self.sleep_s), 3)}) for k in keys
            ]
            try:
                await asyncio.wait_for(self.client.insert_all(jobs), 10)
            except Exception:  # the server is restarting, or our connection was cut
                self.errors += 1
                self.ambiguous.update(keys)
                try:
                    await asyncio.wait_for(self._stop.wait(), 0.05)
                except TimeoutError:
                    pass
                continue
            self.confirmed.update(keys)
            try:
                await asyncio.wait_for(self._stop.wait(), self.batch / self.rate)
            except TimeoutError:
                pass
