"""/healthz and /readyz: is the node alive, and can it do its work now.

The probes use one connection of their own (outside the pool), so that a busy pool never
makes a node look unready and a probe never takes a connection from a job.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol

import asyncpg
import structlog

from jobrunner.core.errors import SchemaMissing, SchemaOutdated
from jobrunner.daemon.http import Response
from jobrunner.db import connection as _db
from jobrunner.db import migrate as _migrate
from jobrunner.db import queries as _queries

if TYPE_CHECKING:
    from jobrunner.engine.node import Node

    class Runner(Node, Protocol):
        """What the endpoints read of a node, beside what plugins see."""

        failed: asyncio.Event
        running: asyncio.Event

        @property
        def stopping(self) -> bool: ...

        @property
        def listening(self) -> bool: ...

        @property
        def listener_connects(self) -> int: ...


log = structlog.get_logger("jobrunner.health")

PROBE_TIMEOUT_S = 2.0


class Probe:
    """One connection for health checks and job counts, reconnected when it is lost."""

    def __init__(self, dsn: str, node: str, reach: _db.Reach = _db.DIRECT) -> None:
        self._dsn = dsn
        self._reach = reach
        self._application_name = f"jobrunner-probe {node}"[:63]
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> asyncpg.Connection:
        conn = self._conn
        if conn is None or conn.is_closed():
            conn = self._conn = await _db.connect(
                self._dsn,
                self._reach,
                server_settings={"application_name": self._application_name},
            )
        return conn

    async def check_schema(self) -> None:
        """Raise unless the database answers within the timeout with a current schema."""
        async with self._lock, asyncio.timeout(PROBE_TIMEOUT_S):
            try:
                await _migrate.verify(await self._connection())
            except BaseException:
                self._drop()
                raise

    async def count_jobs(
        self, timeout_s: float, *, finished: bool = True
    ) -> dict[str, dict[str, int]]:
        """Jobs by queue and state; without `finished`, only the unfinished states."""
        count = _queries.count_jobs if finished else _queries.count_unfinished_jobs
        async with self._lock, asyncio.timeout(timeout_s):
            try:
                return await count(await self._connection())
            except BaseException:
                self._drop()
                raise

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), PROBE_TIMEOUT_S)
            except Exception:  # TimeoutError included
                conn.terminate()


class Health:
    """The answers of /healthz (liveness) and /readyz (readiness) for one runner."""

    def __init__(self, runner: Runner, probe: Probe) -> None:
        self._runner = runner
        self._probe = probe

    async def live(self) -> Response:
        """200 while the loop answers (it runs this) and every producer's task runs.

        A node that is starting or draining is alive (restarting it would only cut its
        running jobs short): /readyz is the one that turns it away.
        """
        runner = self._runner
        problems = []
        if not runner.stopping:
            dead = sorted(q for q, p in runner.producers.items() if not p.alive)
            if dead:
                problems.append(f"producers stopped: {', '.join(dead)}")
        if runner.failed.is_set():
            problems.append("a background task failed")
        state = "running" if runner.running.is_set() else "starting"
        body = {
            "status": "fail" if problems else "ok",
            "node": runner.node,
            "state": "stopping" if runner.stopping else state,
            "queues": sorted(runner.producers),
        }
        if problems:
            body["problems"] = problems
        return Response.json(503 if problems else 200, body)

    async def ready(self) -> Response:
        """200 when the database answers with a current schema and the listener is up."""
        runner = self._runner
        started = time.perf_counter()
        checks: dict[str, str] = {}
        try:
            await self._probe.check_schema()
            checks["database"] = "ok"
        except (SchemaMissing, SchemaOutdated) as exc:
            checks["database"] = _db.redact(str(exc))
        except TimeoutError:
            checks["database"] = f"no answer within {PROBE_TIMEOUT_S:g}s"
        except Exception as exc:
            checks["database"] = _db.redact(str(exc)) or type(exc).__name__
        checks["listener"] = "ok" if runner.listening else "disconnected"
        if runner.stopping or not runner.running.is_set():
            checks["node"] = "stopping" if runner.stopping else "starting"
        ok = all(v == "ok" for v in checks.values())
        body = {
            "status": "ok" if ok else "fail",
            "node": runner.node,
            "checks": checks,
            "duration_s": round(time.perf_counter() - started, 6),
        }
        return Response.json(200 if ok else 503, body)
