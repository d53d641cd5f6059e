"""One live process per node name: a session advisory lock on the name, held while it runs.

Two processes started with the same `--node` (two pods of one StatefulSet name, a copied
command line) would share a node row, and the second would give back the first's running
jobs as if the first had died: the same job would run twice at once. The lock tells a dead
predecessor (its session is gone, so is the lock) from a live one (refused).
"""

from __future__ import annotations

import asyncio

import asyncpg
import structlog

from jobrunner.core.config import Settings
from jobrunner.core.errors import DatabaseUnavailable, JobRunnerError
from jobrunner.core.schema import DEFAULT_SCHEMA
from jobrunner.db import connection as _db
from jobrunner.db import queries as _queries

log = structlog.get_logger("jobrunner.node_lock")

RETRY_S = 0.1


class NodeNameTaken(JobRunnerError):
    """another live process runs under this node name."""


class NodeLock:
    """Holds the lock on a node name on a connection of its own, for the node's life.

    The lock is a session's: behind PgBouncer it is taken through `listen_url` (a direct
    connection); without one no lock is taken (node names are unique unless `--node` says
    otherwise), which `acquire` says once.
    """

    _held_nowhere = False

    def __init__(self, dsn: str, node: str, settings: Settings | None = None) -> None:
        self._dsn = dsn
        self._node = node
        self._skip = False
        self._through_listen_url = False
        if settings is not None:
            if settings.schema != DEFAULT_SCHEMA:  # a name is one node per schema
                self._node = f"{settings.schema}.{node}"
            if settings.pgbouncer:
                self._dsn = settings.listen_url or dsn
                self._skip = not settings.listen_url
                self._through_listen_url = bool(settings.listen_url)
        self._conn: asyncpg.Connection | None = None

    async def acquire(self, wait_s: float) -> None:
        """Take the lock, retrying for `wait_s` seconds (a killed predecessor's session may
        take a moment to end); NodeNameTaken if a live process still holds it."""
        if self._skip:
            log.info(
                "node.lock_skipped",
                node=self._node,
                reason="pgbouncer = true and no listen_url: a session lock cannot be held "
                "through a transaction pooler; give each process its own --node",
            )
            self._skip = False
            self._held_nowhere = True
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        try:
            conn = await _db.connect(self._dsn)
        except DatabaseUnavailable as exc:
            if not self._through_listen_url:
                raise
            log.warning("node.lock_skipped", node=self._node, reason=str(exc))
            self._held_nowhere = True
            return
        try:
            while not await _queries.lock_node_name(conn, self._node):
                if loop.time() >= deadline:
                    raise NodeNameTaken(
                        f"node {self._node!r} is already running in another live process; "
                        "give each process its own --node (or leave it out for a unique name)"
                    )
                await asyncio.sleep(RETRY_S)
        except BaseException:
            await _close(conn)
            raise
        self._conn = conn

    async def check(self) -> None:
        """Still held: if its connection was lost (the lock with it), take the lock again;
        NodeNameTaken if another process took the name meanwhile."""
        if self._held_nowhere or (self._conn is not None and not self._conn.is_closed()):
            return
        log.warning("node.lock_reconnecting", node=self._node)
        self._conn = None
        await self.acquire(wait_s=0)

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await _close(conn)


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 5)
    except Exception:  # closing a broken connection: the server ends the session anyway
        conn.terminate()
