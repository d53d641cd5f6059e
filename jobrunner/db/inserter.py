"""Inserts of plain jobs outside a caller's transaction: on one connection held from the pool,
and grouped into one statement when several tasks insert at once.

Through the pool, a single insert paid for an acquisition and a release (a shielded task) on
top of its statement: about a third of its time. Here the first insert takes a connection and
keeps it while inserts keep coming; it goes back to the pool after `idle_s` without any.
One statement runs at a time on it: an insert that finds one running waits, and all that
waited go together in the next statement (one commit for all), which is what lets many
tasks inserting at once approach the rate of `insert_all`. Each insert still returns once its
own jobs are committed. When a grouped statement is refused (a job the database will not
take), each caller's jobs are inserted again alone, so that one bad job fails only its own
insert. Only small batches come here (SMALL_BATCH): a large `insert_all` goes through the
pool, so that single inserts never wait behind it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import asyncpg

from jobrunner.core.errors import InvalidJob
from jobrunner.core.job import Job
from jobrunner.core.new_job import NewJob
from jobrunner.db.queries.insert import insert_plain_job, insert_plain_jobs

IDLE_S = 1.0  # a held connection goes back to the pool after this long without inserts
# Larger batches go through the pool: the pool's cost is small beside their statement, and
# small inserts should not wait behind them.
SMALL_BATCH = 100
GROUP_MAX = 5_000  # jobs in one grouped statement at most

_Waiter = tuple[Sequence[NewJob], "asyncio.Future[list[Job]]"]


class Inserter:
    """Plain inserts on a connection held from `pool` (see the module's description)."""

    def __init__(self, pool: Any, idle_s: float = IDLE_S) -> None:
        self._pool = pool
        self._idle_s = idle_s
        self._conn: Any = None
        self._busy = False
        self._waiting: list[_Waiter] = []
        self._used_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    async def insert(self, jobs: Sequence[NewJob]) -> list[Job]:
        """Insert `jobs` (none unique) and return them, committed, in their order."""
        if self._busy:
            waiter: asyncio.Future[list[Job]] = asyncio.get_running_loop().create_future()
            self._waiting.append((jobs, waiter))
            return await waiter
        self._busy = True
        try:
            return await self._run(jobs)
        finally:
            self._next()

    async def _run(self, jobs: Sequence[NewJob]) -> list[Job]:
        conn = self._conn
        if conn is not None and not usable(conn):  # the server ended it while it was held
            self._conn = conn = None  # the pool has taken it back already
        if conn is None:
            conn = self._conn = await self._pool.acquire()
            self._arm()
        try:
            if len(jobs) == 1:
                return [await insert_plain_job(conn, jobs[0])]
            return await insert_plain_jobs(conn, jobs)
        except (InvalidJob, asyncpg.PostgresError):
            raise  # the statement failed and rolled back; the connection is fine
        except BaseException:
            self._drop()  # lost, or cancelled mid-statement: the pool resets or closes it
            raise
        finally:
            self._used_at = time.monotonic()

    def _next(self) -> None:
        """After a statement: the inserts that waited go next, in a task, else none is busy."""
        if self._waiting:
            self._spawn(self._drain())
        else:
            self._busy = False
            if self._closing:
                self._release()

    async def _drain(self) -> None:
        try:
            while self._waiting:
                group = self._take_group()
                if group:
                    await self._run_group(group)
        finally:
            self._busy = False
            if self._closing:
                self._release()
            waiting, self._waiting = self._waiting, []
            for _, waiter in waiting:  # the drain itself was cancelled (the loop is closing)
                waiter.cancel()

    def _take_group(self) -> list[_Waiter]:
        group: list[_Waiter] = []
        size = 0
        while self._waiting and (not group or size + len(self._waiting[0][0]) <= GROUP_MAX):
            jobs, waiter = self._waiting.pop(0)
            if not waiter.done():  # its caller was cancelled meanwhile
                group.append((jobs, waiter))
                size += len(jobs)
        return group

    async def _run_group(self, group: list[_Waiter]) -> None:
        jobs = [job for part, _ in group for job in part]
        try:
            inserted = await self._run(jobs)
        except (InvalidJob, asyncpg.PostgresError) as exc:
            if len(group) == 1:
                _settle(group[0][1], exc=exc)
                return
            for part, waiter in group:  # nothing was inserted: each alone, to fail only its own
                try:
                    _settle(waiter, await self._run(part))
                except (InvalidJob, asyncpg.PostgresError) as alone:
                    _settle(waiter, exc=alone)
            return
        except BaseException as exc:
            for _, waiter in group:
                _settle(waiter, exc=exc)
            if not isinstance(exc, Exception):
                raise
            return
        start = 0
        for part, waiter in group:
            _settle(waiter, inserted[start : start + len(part)])
            start += len(part)

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._idle_s, self._idle_check)

    def _idle_check(self) -> None:
        self._timer = None
        if self._conn is None:
            return
        idle_for = time.monotonic() - self._used_at
        if self._busy or idle_for < self._idle_s:
            self._timer = asyncio.get_running_loop().call_later(
                max(self._idle_s - idle_for, 0.01), self._idle_check
            )
            return
        self._release()

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            mark = getattr(conn, "mark_statements_only", None)
            if mark is not None:
                mark()  # only jobrunner's statements ran: no reset round trip
            self._spawn(self._give_back(conn))

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._spawn(self._give_back(conn))

    async def _give_back(self, conn: Any) -> None:
        try:
            await self._pool.release(conn)
        except Exception:
            if usable(conn):
                conn.terminate()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro, name="jobrunner.inserter")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Give the connection back (before the pool closes); waits for grouped inserts under
        way (an insert running alone gives it back when it ends)."""
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if not self._busy:
            self._release()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def usable(conn: Any) -> bool:
    """Whether a held connection is still open and still ours (the pool takes back one that
    the server closed)."""
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:
        return False


def _settle(
    waiter: asyncio.Future[list[Job]],
    result: list[Job] | None = None,
    *,
    exc: BaseException | None = None,
) -> None:
    if waiter.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        waiter.cancel()
    elif exc is not None:
        waiter.set_exception(exc)
    else:
        assert result is not None
        waiter.set_result(result)
