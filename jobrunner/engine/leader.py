"""Leader election: one node at a time holds a lease row in jobrunner_leader."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Protocol

import structlog

from jobrunner.core.errors import ConfigError
from jobrunner.db import connection as _db
from jobrunner.db import queries as _queries

log = structlog.get_logger("jobrunner.leader")

LEADERSHIP = "jobrunner"
RENEWALS_PER_LEASE = 3


class Leadership(Protocol):
    """What leader-only plugins ask before each tick."""

    @property
    def is_leader(self) -> bool: ...


class Leader:
    """Takes, renews and gives up the cluster's leader lease for this node.

    The lease lives in `jobrunner_leader`, keyed by leadership name, holding this node's
    per-process name; the database's clock decides when it expires. Every node tries every
    `lease_s / 3`: the holder renews, the others take it once it has expired. A node that stops
    cleanly deletes its lease and notifies, so another node takes over at once.

    Example:
        >>> leader = Leader(pool, node="web-1-1234-ab12cd", lease_s=15)
        >>> await leader.start(); leader.is_leader
    """

    _task: asyncio.Task[None] | None = None

    def __init__(
        self,
        pool: _queries.Conn,
        *,
        node: str,
        lease_s: float,
        name: str = LEADERSHIP,
        listen: Callable[[Callable[[str], None]], None] | None = None,
    ) -> None:
        self._validate(lease_s)
        self._pool = pool
        self._listen = listen
        self.node = node
        self.name = name
        self.lease_s = lease_s
        self.interval_s = lease_s / RENEWALS_PER_LEASE
        self._valid_until = 0.0
        self._wake = asyncio.Event()

    @staticmethod
    def _validate(lease_s: float) -> None:
        if not lease_s > 0:
            raise ConfigError(f"leader_lease_s must be > 0 seconds, got {lease_s!r}")

    @property
    def is_leader(self) -> bool:
        """True while this node holds a lease it renewed less than `lease_s` ago.

        Measured on this process's monotonic clock from before the renewal was sent, so a
        node cut off from the database stops acting as leader no later than its lease ends.
        """
        return time.monotonic() < self._valid_until

    def wake(self, _payload: str = "") -> None:
        """Try for the lease now (the holder resigned)."""
        self._wake.set()

    async def start(self) -> None:
        """Try for the lease once, then keep renewing or trying in the background."""
        if self._listen is not None:
            self._listen(self.wake)  # a resigning leader's NOTIFY
        await self._attempt()
        self._task = asyncio.create_task(self._loop(), name="jobrunner.leader")

    async def stop(self) -> None:
        """Stop trying; if this node leads, delete its lease so another node takes over."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._valid_until = 0.0
        if await _queries.resign_leader(self._pool, name=self.name, node=self.node):
            log.info("leader.resigned", node=self.node)

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await self._wake.wait()
            self._wake.clear()
            await self._attempt()

    async def _attempt(self) -> None:
        try:
            await self._tick()
        except Exception as exc:
            self._lose("error")
            log.warning("leader.failed", node=self.node, error=_db.redact(str(exc)))

    async def _tick(self) -> bool:
        """Take or renew the lease once; True if this node leads."""
        sent = time.monotonic()
        leads = await _queries.elect_leader(
            self._pool, name=self.name, node=self.node, lease_s=self.lease_s
        )
        if leads:
            if not self.is_leader:
                log.info("leader.elected", node=self.node)
            self._valid_until = sent + self.lease_s
        else:
            self._lose("taken")
        return leads

    def _lose(self, reason: str) -> None:
        if self.is_leader:
            log.warning("leader.lost", node=self.node, reason=reason)
        self._valid_until = 0.0
