"""Helpers for testing code that uses jobrunner, from your own pytest suite.

`perform_job` runs one job through the executor with no database; `assert_enqueued`,
`refute_enqueued` and `all_enqueued` look at the jobs in the database, by default those that
have not finished: available, scheduled and retryable (Oban looks at available and
scheduled; a job waiting for its retry is still enqueued); `drain_queue` runs a queue's
waiting jobs here, as Oban's does. Pair them with `jobrunner.connect(dsn, testing="manual")`.

Each of them takes `conn=`, a connection inside a test's transaction that is rolled back
afterwards (the sandbox pattern): they then see the jobs inserted in it, and `drain_queue`
runs them in it, so that what the jobs write, and the jobs they enqueue, roll back too.

Example:
    >>> await perform_job(send_email, {"user_id": 42})
    >>> await assert_enqueued(client, worker=send_email, args={"user_id": 42})
    >>> (await drain_queue(client, "emails")).completed
    1
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, cast

import asyncpg

from jobrunner.client import Client, TestingMode
from jobrunner.core.config import testing_override
from jobrunner.engine import drain as _drain
from jobrunner.engine.drain import DrainResult
from jobrunner.testing.assertions import DEFAULT_STATES as DEFAULT_STATES
from jobrunner.testing.assertions import SCHEDULED_AT_TOLERANCE as SCHEDULED_AT_TOLERANCE
from jobrunner.testing.assertions import JobFilters as JobFilters
from jobrunner.testing.assertions import all_enqueued as all_enqueued
from jobrunner.testing.assertions import assert_enqueued as assert_enqueued
from jobrunner.testing.assertions import refute_enqueued as refute_enqueued
from jobrunner.testing.perform import build_job as build_job
from jobrunner.testing.perform import perform_job
from jobrunner.testing.triggers import run_trigger_scan

__all__ = [
    "DEFAULT_STATES",
    "DrainResult",
    "JobFilters",
    "all_enqueued",
    "assert_enqueued",
    "drain_queue",
    "perform_job",
    "refute_enqueued",
    "run_trigger_scan",
    "with_testing_mode",
]


@contextlib.contextmanager
def with_testing_mode(mode: TestingMode) -> Iterator[None]:
    """Every client runs in testing `mode` ("inline" or "manual") inside the block, in this
    task and the tasks it starts; a Runner started there runs no queue and no plugin.

    Example:
        >>> with with_testing_mode("inline"):
        ...     job = await client.insert(send_email.new({"user_id": 42}))   # ran already
        >>> job.state
        <JobState.COMPLETED: 'completed'>
    """
    if mode not in ("inline", "manual"):
        raise ValueError(f"testing mode must be 'inline' or 'manual', got {mode!r}")
    token = testing_override.set(mode)
    try:
        yield
    finally:
        testing_override.reset(token)


# --- drain_queue ---------------------------------------------------------------------------


async def drain_queue(
    client: Client,
    queue: str,
    *,
    with_scheduled: bool | datetime = False,
    with_recursion: bool = False,
    with_safety: bool = True,
    with_limit: int | None = None,
    conn: Any = None,
) -> DrainResult:
    """Run the waiting jobs of `queue` in this process, one after another, as Oban does.

    Available jobs run, and scheduled or retryable ones whose time has come; with
    `with_scheduled=True` also those whose time has not come (a datetime: those due by
    then). `with_recursion=True` also runs the jobs the drained jobs enqueue (and retries a
    failed job while its retry qualifies); `with_limit` caps how many jobs run;
    `with_safety=False` lets the first exception a worker raises propagate (its failure is
    recorded first). A snoozed job does not run twice in one drain. A job cancelled while
    it runs is stopped and counts as cancelled. A batch callback inserted when the drained
    jobs end their batch runs in the drain if it is in `queue` (else it is enqueued in its
    own), with or without `with_recursion`.

    With `conn` (an asyncpg connection in a test's transaction), the jobs are claimed and
    acked through it, so those inserted in the transaction run, and inside them
    `jobrunner.current_client()` works through it too: everything rolls back with it.

    Returns:
        The counts by outcome (`completed`, `failure`, `snoozed`, `cancelled`,
        `discarded`; `as_dict()` gives them as a dict) and the `exceptions` raised.

    Example:
        >>> await client.insert(send_email.new({"user_id": 42}))
        >>> result = await drain_queue(client, "emails")
        >>> result.as_dict()
        {'completed': 1, 'failure': 0, 'snoozed': 0, 'cancelled': 0, 'discarded': 0}
    """
    return await _drain.drain(
        client if conn is None else sandboxed(client, conn),
        [queue],
        with_scheduled=with_scheduled,
        with_recursion=with_recursion,
        with_safety=with_safety,
        with_limit=with_limit,
    )


# --- one connection, a test's transaction -------------------------------------------------


class _OneConnection:
    """A pool-like view of one connection (a test's transaction), one statement at a time:
    the drain's own statements and a running job's share it."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()

    def is_in_transaction(self) -> bool:
        return bool(self._conn.is_in_transaction())

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Any]:  # noqa: ASYNC109
        async with self._lock:
            return cast(list[Any], await self._conn.fetch(query, *args, timeout=timeout))

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        async with self._lock:
            return await self._conn.fetchrow(query, *args, timeout=timeout)

    async def fetchval(self, query: str, *args: Any, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        async with self._lock:
            return await self._conn.fetchval(query, *args, timeout=timeout)

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:  # noqa: ASYNC109
        async with self._lock:
            return cast(str, await self._conn.execute(query, *args, timeout=timeout))

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._lock:
            yield self._conn


def sandboxed(client: Client, conn: Any) -> Client:
    """A client like `client` whose every statement goes through `conn` (a test's
    transaction): what it inserts, and what the jobs it runs write, roll back with it."""
    if isinstance(conn, _OneConnection):
        view = conn
    elif callable(getattr(conn, "fetch", None)) and callable(getattr(conn, "transaction", None)):
        view = _OneConnection(conn)  # an asyncpg connection, or one of a pool's
    else:
        raise TypeError(f"conn must be an asyncpg connection, got {type(conn).__name__}")
    return Client(
        client.dsn, settings=client.settings, testing=client.testing, pool=cast(Any, view)
    )
