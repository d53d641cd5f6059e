"""Writes job outcomes back in batches: one statement for every ack pending at that moment."""

from __future__ import annotations

import asyncio
import random

import asyncpg
import structlog

from . import _db, _queries
from ._queries import Ack

log = structlog.get_logger("jobrunner.acker")

BATCH_SIZE = 2_000


class Acker:
    """Collects acks and flushes them as one UPDATE each time the database is free.

    Under load many acks ride in one statement; when idle an ack is written at once.
    A failed write keeps the acks and retries: an ack is never dropped while the node runs.
    Acks are idempotent (they only change a job this node still owns at that attempt), so
    writing one twice after an ambiguous failure is harmless.
    """

    _task: asyncio.Task[None] | None = None

    def __init__(self, pool: asyncpg.Pool, node: str) -> None:
        self._pool = pool
        self._node = node
        self._pending: list[Ack] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.written = 0
        self.stale = 0
        self.flushes = 0

    def push(self, ack: Ack) -> None:
        self._pending.append(ack)
        self._idle.clear()
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="jobrunner.acker")

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Flush what is pending (up to `timeout_s`), then stop."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._idle.wait()), timeout_s)
        except TimeoutError:
            log.error("acker.unflushed", pending=len(self._pending))
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def _loop(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[:BATCH_SIZE], self._pending[BATCH_SIZE:]
                try:
                    await self._write(batch)
                    failures = 0
                except asyncio.CancelledError:
                    self._pending[:0] = batch
                    raise
                except Exception as exc:
                    self._pending[:0] = batch
                    failures += 1
                    log.warning(
                        "acker.write_failed",
                        error=_db.redact(str(exc)),
                        pending=len(self._pending),
                        failures=failures,
                    )
                    await asyncio.sleep(
                        min(2.0, 0.02 * 2 ** min(failures, 8)) * random.uniform(0.5, 1.0)
                    )
            if not self._pending:
                self._idle.set()

    async def _write(self, batch: list[Ack]) -> None:
        owned = await _queries.ack_jobs(self._pool, self._node, batch)
        self.flushes += 1
        self.written += len(owned)
        if len(owned) != len(batch):
            lost = [a.job_id for a in batch if a.job_id not in owned]
            self.stale += len(lost)
            log.warning(
                "ack.stale",
                job_ids=lost[:20],
                count=len(lost),
                reason="job no longer owned by this node (rescued or cancelled)",
            )
