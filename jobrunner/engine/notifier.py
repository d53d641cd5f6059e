"""LISTEN/NOTIFY on one dedicated connection, reconnecting with jittered backoff."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import asyncpg
import structlog

from jobrunner.core.config import Settings
from jobrunner.core.schema import DEFAULT_SCHEMA, channel
from jobrunner.db import connection as _db

log = structlog.get_logger("jobrunner.notifier")

INSERT = "jobrunner_insert"
CANCEL = "jobrunner_cancel"
CONTROL = "jobrunner_control"
LEADER = "jobrunner_leader"
CHANNELS = (INSERT, CANCEL, CONTROL, LEADER)

APPLICATION_NAME = "jobrunner.listener"
_MAX_APPLICATION_NAME = 63  # PostgreSQL truncates longer names (NAMEDATALEN - 1)

Callback = Callable[[str], None]


def application_name(node: str | None) -> str:
    """The listener's `application_name`, so operators and tests can find it in pg_stat_activity."""
    name = APPLICATION_NAME if node is None else f"{APPLICATION_NAME}:{node}"
    return name.encode()[:_MAX_APPLICATION_NAME].decode(errors="ignore")


class Notifier:
    """Delivers notification payloads to subscribers; `on_reconnect` runs after every reconnect.

    `start()` connects and LISTENs before returning, so that nothing inserted after it is
    missed. A lost connection is re-established in the background; meanwhile a lost
    notification only costs latency, since every consumer also polls. After a reconnect the
    callbacks run so that consumers look again for what they may have missed.

    With `settings`: channels are the schema's (`core.schema.channel`), LISTEN goes to
    `listen_url` when given, and behind PgBouncer without one (LISTEN needs a session) the
    node only polls, which `start()` says once. A `listen_url` that cannot connect is one
    warning; the node polls meanwhile and the connection is retried in the background.
    """

    _task: asyncio.Task[None] | None = None

    def __init__(
        self,
        dsn: str,
        *,
        node: str | None = None,
        health_interval_s: float = 5.0,
        max_backoff_s: float = 5.0,
        settings: Settings | None = None,
    ) -> None:
        self._settings = settings
        schema = settings.schema if settings is not None else DEFAULT_SCHEMA
        self._channels = {channel(name, schema): name for name in CHANNELS}
        self._listen_url = settings.listen_url if settings is not None else None
        self._dsn = self._listen_url or dsn
        self._application_name = application_name(node)
        self._health_interval_s = health_interval_s
        self._max_backoff_s = max_backoff_s
        self._subscribers: dict[str, list[Callback]] = {c: [] for c in CHANNELS}
        self._reconnect_callbacks: list[Callable[[], None]] = []
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self.connected = asyncio.Event()
        self.connects = 0

    def subscribe(self, channel: str, callback: Callback) -> None:
        self._subscribers[channel].append(callback)

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        self._reconnect_callbacks.append(callback)

    @property
    def backend_pid(self) -> int | None:
        """The server pid of the listening connection (tests terminate it)."""
        conn = self._conn
        return conn.get_server_pid() if conn is not None and not conn.is_closed() else None

    @property
    def polling_only(self) -> bool:
        """Behind PgBouncer with no listen_url: no LISTEN at all."""
        settings = self._settings
        return settings is not None and settings.pgbouncer and not self._listen_url

    @property
    def listening(self) -> bool:
        """Its connection is up, or it has none to keep (`polling_only`)."""
        return self.polling_only or self.connected.is_set()

    async def start(self) -> None:
        """Connect and LISTEN (raising DatabaseUnavailable if that fails), then keep it up."""
        poll_s = self._settings.poll_interval_s if self._settings is not None else None
        if self.polling_only:
            log.info(
                "notifier.polling",
                poll_interval_s=poll_s,
                reason="pgbouncer = true and no listen_url: LISTEN needs a session, so "
                "queues, control commands and cancels are polled",
            )
            return
        failed = 0
        if self._listen_url:
            try:
                await self._connect()
            except Exception as exc:
                failed = 1  # said here; the loop's retries say it again every hundredth
                log.warning(
                    "notifier.listen_url_unavailable",
                    error=_db.redact(str(exc)),
                    poll_interval_s=poll_s,
                    note="polling until the listen_url connects",
                )
        else:
            await self._connect()
        self._task = asyncio.create_task(self._loop(failed), name="jobrunner.notifier")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._close()

    def _dispatch(self, _conn: Any, _pid: int, name: str, payload: str) -> None:
        channel = self._channels.get(name, name)
        for callback in self._subscribers.get(channel, ()):
            try:
                callback(payload)
            except Exception:
                log.exception("notifier.callback_failed", channel=channel)

    async def _loop(self, failures: int = 0) -> None:
        while True:
            if self._conn is None:
                try:
                    await self._connect()
                except Exception as exc:
                    failures += 1
                    if failures == 1 or failures % 100 == 0:  # not a line per retry
                        log.warning(
                            "notifier.connect_failed",
                            error=_db.redact(str(exc)),
                            failures=failures,
                        )
                    delay = min(self._max_backoff_s, 0.05 * 2 ** min(failures, 10))
                    await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                    continue
                failures = 0
                log.info("notifier.reconnected", connects=self.connects)
                self._run_reconnect_callbacks()
            try:
                await self._watch()
            except Exception as exc:
                log.warning("notifier.disconnected", error=_db.redact(str(exc)))
            await self._close()

    async def _connect(self) -> None:
        conn = await _db.connect(
            self._dsn, server_settings={"application_name": self._application_name}
        )
        self._lost.clear()
        conn.add_termination_listener(lambda _c: self._lost.set())
        try:
            for name in self._channels:
                await conn.add_listener(name, self._dispatch)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        self.connects += 1
        self.connected.set()

    async def _watch(self) -> None:
        """Return once the connection is lost; a health query finds half-open connections."""
        conn = self._conn
        assert conn is not None
        while not conn.is_closed():
            try:
                await asyncio.wait_for(self._lost.wait(), self._health_interval_s)
            except TimeoutError:
                await conn.execute("SELECT 1", timeout=self._health_interval_s)
            else:
                break
        raise ConnectionError("listener connection closed")

    def _run_reconnect_callbacks(self) -> None:
        for callback in self._reconnect_callbacks:
            try:
                callback()
            except Exception:
                log.exception("notifier.callback_failed", channel="reconnect")

    async def _close(self) -> None:
        self.connected.clear()
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), 2)
            except Exception:  # TimeoutError included
                conn.terminate()
