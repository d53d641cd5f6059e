"""The live data every open page shares: the overview (queues, nodes, the last hour's
throughput, cron), refreshed at most once an interval however many pages are open, and the
rendered fragments the pages poll.

Ten open dashboards cost what one does: the overview is one set of queries per interval
(never more often than keeps its queries under a twentieth of the time), the chart adds
only the minutes still moving to a series kept in memory, and each fragment is rendered once
per interval for every viewer of the same URL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from jobrunner.db.queries import dashboard as _dashboard
from jobrunner.ops import status as _status
from jobrunner.web.data import cron_entries

if TYPE_CHECKING:
    from jobrunner.db.connection import Connected

CHART_STATES = ("completed", "discarded", "cancelled")
MINUTES = 60
FULL_EVERY_S = 300.0  # the whole hour is read again this often: retried or deleted jobs
DUTY = 20  # the overview refreshes no sooner than DUTY times what its queries took
CSRF_SLOT = "\x00csrf\x00"  # a shared fragment's CSRF token; no stored text holds a NUL


@dataclass(frozen=True, slots=True)
class Overview:
    """Queues, nodes, the last hour's throughput and the cron entries, at `status.now`."""

    status: _status.Status
    minutes: list[dict[str, Any]]
    cron: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        body = self.status.to_json()
        body["throughput"] = self.minutes
        body["cron"] = self.cron
        return body


@dataclass
class Throughput:
    """Jobs finished per minute over the last hour, kept in memory: a refresh reads only the
    minutes that may still change (the current and the previous one), through the pruner's
    index; the whole hour is read at first and every FULL_EVERY_S seconds."""

    _minutes: dict[datetime, dict[str, int]] = field(default_factory=dict)
    _since: datetime | None = None
    _full_at: float = 0.0

    async def refresh(self, client: Connected, now: datetime) -> list[dict[str, Any]]:
        end = now.replace(second=0, microsecond=0)
        start = end - timedelta(minutes=MINUTES - 1)
        since = start if self._since is None or self._since < start else self._since
        if time.monotonic() - self._full_at >= FULL_EVERY_S:
            since, self._full_at = start, time.monotonic()
        rows = await _dashboard.web_throughput(client.pool, since)
        for minute in [m for m in self._minutes if m < start or m >= since]:
            del self._minutes[minute]
        for minute, state, n in rows:
            if minute >= since and state in CHART_STATES:
                self._minutes.setdefault(minute, dict.fromkeys(CHART_STATES, 0))[state] += n
        self._since = end - timedelta(minutes=1)  # a minute is final once the next one ends
        return [
            {"minute": m.isoformat(), **self._minutes.get(m, dict.fromkeys(CHART_STATES, 0))}
            for m in (start + timedelta(minutes=i) for i in range(MINUTES))
        ]


@dataclass
class OverviewCache:
    """One overview at a time, reused for `ttl_s` (or longer when its queries are slow, on a
    big table: DUTY times what they took), so open pages cost one refresh an interval."""

    ttl_s: float
    _value: Overview | None = None
    _at: float = 0.0
    _took: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _throughput: Throughput = field(default_factory=Throughput)

    async def get(self, client: Connected) -> Overview:
        async with self._lock:
            age = time.monotonic() - self._at
            if self._value is None or age >= max(self.ttl_s, DUTY * self._took):
                began = time.monotonic()
                self._value = await self._overview(client)
                self._at = time.monotonic()
                self._took = self._at - began
            return self._value

    async def _overview(self, client: Connected) -> Overview:
        status = await _status.status(client)
        minutes = await self._throughput.refresh(client, status.now)
        return Overview(status, minutes, await cron_entries(client, status.now))

    def clear(self) -> None:
        self._value = None


@dataclass
class FragmentCache:
    """Rendered live fragments shared by every viewer for `ttl_s`: open pages polling the same
    fragment cost one query and one render per interval, however many they are. A fragment
    is rendered with CSRF_SLOT for the token; each response puts the viewer's own in."""

    ttl_s: float
    max_entries: int = 256
    _found: dict[tuple[str, ...], tuple[float, str]] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def get(self, key: tuple[str, ...], render: Callable[[], Awaitable[str]]) -> str:
        async with self._lock:  # one render at a time: viewers arriving together share it
            now = time.monotonic()
            hit = self._found.get(key)
            if hit is not None and now - hit[0] < self.ttl_s:
                return hit[1]
            text = await render()
            if len(self._found) >= self.max_entries:
                self._found = {k: v for k, v in self._found.items() if now - v[0] < self.ttl_s}
                if len(self._found) >= self.max_entries:
                    self._found.clear()
            self._found[key] = (time.monotonic(), text)
            return text

    def clear(self) -> None:
        self._found.clear()
