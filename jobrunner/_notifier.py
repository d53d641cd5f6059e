"""LISTEN/NOTIFY on one dedicated connection, reconnecting with jittered backoff."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import asyncpg
import structlog

from . import _db

log = structlog.get_logger("jobrunner.notifier")

INSERT = "jobrunner_insert"
CANCEL = "jobrunner_cancel"
CONTROL = "jobrunner_control"
CHANNELS = (INSERT, CANCEL, CONTROL)

Callback = Callable[[str], None]


class Notifier:
    """Delivers notification payloads to subscribers; `on_reconnect` runs after every (re)connect.

    A lost notification only costs latency: every consumer also polls. After a reconnect the
    callbacks run so that consumers look again for what they may have missed.
    """

    _task: asyncio.Task[None] | None = None

    def __init__(self, dsn: str, *, health_interval_s: float = 5.0,
                 max_backoff_s: float = 5.0) -> None:
        self._dsn = dsn
        self._health_interval_s = health_interval_s
        self._max_backoff_s = max_backoff_s
        self._subscribers: dict[str, list[Callback]] = {c: [] for c in CHANNELS}
        self._reconnect_callbacks: list[Callable[[], None]] = []
        self._conn: asyncpg.Connection | None = None
        self.connected = asyncio.Event()
        self.connects = 0

    def subscribe(self, channel: str, callback: Callback) -> None:
        self._subscribers[channel].append(callback)

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        self._reconnect_callbacks.append(callback)

    @property
    def backend_pid(self) -> int | None:
        """The server pid of the listening connection (tests terminate it)."""
        return self._conn.get_server_pid() if self._conn is not None else None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="jobrunner.notifier")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    def _dispatch(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        for callback in self._subscribers.get(channel, ()):
            try:
                callback(payload)
            except Exception:
                log.exception("notifier.callback_failed", channel=channel)

    async def _loop(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen()
                failures = 0
            except Exception as exc:
                failures += 1
                log.warning("notifier.disconnected", error=_db.redact(str(exc)), failures=failures)
            finally:
                self.connected.clear()
                await self._close()
            delay = min(self._max_backoff_s, 0.05 * 2 ** min(failures, 10))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter

    async def _listen(self) -> None:
        conn = await _db.connect(self._dsn)
        self._conn = conn
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        for channel in CHANNELS:
            await conn.add_listener(channel, self._dispatch)
        self.connects += 1
        self.connected.set()
        if self.connects > 1:
            log.info("notifier.reconnected", connects=self.connects)
        for callback in self._reconnect_callbacks:
            callback()
        while not conn.is_closed():
            try:
                await asyncio.wait_for(lost.wait(), self._health_interval_s)
            except TimeoutError:
                await conn.execute("SELECT 1", timeout=self._health_interval_s)
        raise ConnectionError("listener connection closed")

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), 2)
            except (Exception, asyncio.TimeoutError):
                conn.terminate()
