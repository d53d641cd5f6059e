"""The node's own connections for what keeps it alive and in charge: heartbeat, ownership
and cancel checks, leader renewal and rescue never wait behind running jobs for a
connection of the job pool."""

from __future__ import annotations

from typing import Any

import asyncpg
import structlog

from jobrunner.core.config import Settings
from jobrunner.core.errors import JobRunnerError, PoolTimeout
from jobrunner.db import connection as _db

log = structlog.get_logger("jobrunner.lease")

LEASE_POOL_SIZE = 2
APPLICATION_NAME = "jobrunner.lease"


class LeaseConnections:
    """A pool of `LEASE_POOL_SIZE` connections apart from the job pool, used like one
    connection (`fetch`, `fetchrow`, `execute`). Waiting for one is bounded by `wait_s`;
    when none comes free in time the statement fails with PoolTimeout and a
    `node.lease_connection_unavailable` line says so.

    Example:
        >>> lease = LeaseConnections(dsn, wait_s=5)
        >>> await lease.start(); await _queries.heartbeat_node(lease, ...)
    """

    def __init__(self, dsn: str, *, wait_s: float, reach: _db.Reach = _db.DIRECT) -> None:
        self._dsn = dsn
        self._reach = reach
        self.wait_s = wait_s
        self._pool: asyncpg.Pool | None = None

    @classmethod
    def of(cls, dsn: str, settings: Settings) -> LeaseConnections:
        """A node's: waits bounded by its heartbeat interval, reaching the server as its
        settings say (schema, PgBouncer)."""
        return cls(dsn, wait_s=settings.heartbeat_interval_s, reach=_db.Reach.of(settings))

    @property
    def open(self) -> bool:
        return self._pool is not None

    async def start(self) -> None:
        self._pool = await _db.create_pool(
            self._dsn,
            max_size=LEASE_POOL_SIZE,
            min_size=1,
            acquire_timeout_s=self.wait_s,
            application_name=APPLICATION_NAME,
            name="lease",
            reach=self._reach,
        )

    async def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await _db.close_pool(pool)

    async def _acquire(self) -> Any:
        if self._pool is None:
            raise JobRunnerError("the node's lease connections are not open")
        try:
            return await self._pool.acquire()
        except PoolTimeout:
            log.warning(
                "node.lease_connection_unavailable",
                wait_s=self.wait_s,
                reason="every lease connection is busy: a heartbeat, rescue or leader "
                "statement is slow",
            )
            raise

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Any]:  # noqa: ASYNC109
        conn = await self._acquire()
        try:
            rows: list[Any] = await conn.fetch(query, *args, timeout=timeout)
            conn.mark_statements_only()
            return rows
        finally:
            await self._release(conn)

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        rows = await self.fetch(query, *args, timeout=timeout)
        return rows[0] if rows else None

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:  # noqa: ASYNC109
        conn = await self._acquire()
        try:
            status: str = await conn.execute(query, *args, timeout=timeout)
            conn.mark_statements_only()
            return status
        finally:
            await self._release(conn)

    async def _release(self, conn: Any) -> None:
        if self._pool is not None:
            await self._pool.release(conn)
        else:
            conn.terminate()
