"""Writes job outcomes back in batches: one statement for every ack pending at that moment."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import asyncpg
import structlog

from jobrunner.core import telemetry as _telemetry
from jobrunner.db import connection as _db
from jobrunner.db import queries as _queries
from jobrunner.db.queries import Ack
from jobrunner.engine import executor as _executor

log = structlog.get_logger("jobrunner.acker")

BATCH_SIZE = 2_000
STARTED = "executing"  # the ack of a job claimed ahead that started: it stays executing


def _one_per_job(batch: list[Ack]) -> list[Ack]:
    """Without the start of a job whose outcome is in the same batch: one statement must
    change a row once (the outcome clears the claimed-ahead flag too)."""
    if not any(ack.state == STARTED for ack in batch):
        return batch
    ended = {ack.job_id for ack in batch if ack.state != STARTED}
    return [ack for ack in batch if ack.state != STARTED or ack.job_id not in ended]


class Acker:
    """Collects acks and writes them in batches.

    Under load a producer about to fetch carries every pending ack in its fetch statement
    (`take`, then `settle` or `restore`): one round trip and one commit end the last jobs
    and claim the next. Acks that no fetch is about to carry (the queue is empty, paused or
    stopping) are written here at once, as one UPDATE. A failed write keeps the acks and
    retries: an ack is never dropped while the node runs. Acks are idempotent (they only
    change a job this node still owns at that attempt), so writing one twice after an
    ambiguous failure is harmless.

    A batch the database refuses (a value it cannot store) is written apart, split in
    halves until the refused ack is alone; that one is written as a failed attempt of its
    job instead, so one bad outcome holds up no other job.
    """

    _task: asyncio.Task[None] | None = None

    def __init__(self, pool: asyncpg.Pool, node: str) -> None:
        self._pool = pool
        self._node = node
        self._pending: list[Ack] = []
        self._refused: list[list[Ack]] = []  # batches to write apart, splitting them
        self._replaced: dict[int, int] = {}  # job id: times its refused ack was replaced
        self._in_flight = 0  # batches taken and not yet settled or restored
        self._carriers: list[Callable[[], bool]] = []
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

    def add_carrier(self, about_to_fetch: Callable[[], bool]) -> None:
        """A producer whose fetch will carry the pending acks whenever `about_to_fetch()`."""
        self._carriers.append(about_to_fetch)

    def take(self) -> list[Ack]:
        """Up to a batch of pending acks, for a statement that will write them."""
        batch, self._pending = self._pending[:BATCH_SIZE], self._pending[BATCH_SIZE:]
        if batch:
            self._in_flight += 1
            batch = _one_per_job(batch)
        return batch

    def settle(self, batch: list[Ack], owned: set[int]) -> None:
        """`batch` (from `take`) is written; `owned` are the ids this node still held.

        Acks that arrived meanwhile (they may have waited for this statement) go next.
        """
        if not batch:
            self.poke()
            return
        self._in_flight -= 1
        self.flushes += 1
        _telemetry.batch("ack", "", len(batch))
        # A job claimed ahead that started may have ended before that was written: not stale.
        starts = {a.job_id for a in batch if a.state == STARTED}
        self.written += len(owned - starts)
        lost = (
            []
            if len(owned) == len(batch)
            else [a.job_id for a in batch if a.job_id not in owned and a.job_id not in starts]
        )
        self.stale += len(lost)
        if lost:
            log.warning(
                "ack.stale",
                job_ids=lost[:20],
                count=len(lost),
                reason="job no longer owned by this node (rescued or cancelled)",
            )
        self._after_write()

    def restore(self, batch: list[Ack]) -> None:
        """`batch` (from `take`) was not written, or may not have been: it goes back first."""
        if not batch:
            return
        self._in_flight -= 1
        self._pending[:0] = batch
        self._wake.set()

    def refuse(self, batch: list[Ack]) -> None:
        """`batch` (from `take`) was refused by the database: this task writes it apart."""
        if not batch:
            return
        self._in_flight -= 1
        self._refused.append(batch)
        self._wake.set()

    def poke(self) -> None:
        """A carrier changed its mind: write what is pending unless another fetch carries it."""
        if self._pending:
            self._wake.set()

    def _after_write(self) -> None:
        if self._pending:
            self._wake.set()  # what arrived meanwhile: carried by a fetch, or written here
        elif not self._in_flight and not self._refused:
            self._idle.set()

    @property
    def pending(self) -> int:
        return len(self._pending) + sum(len(batch) for batch in self._refused)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="jobrunner.acker")

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Flush what is pending (up to `timeout_s`), then stop."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._idle.wait()), timeout_s)
        except TimeoutError:
            log.error("acker.unflushed", pending=self.pending)
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
            # The jobs that pushed these acks wake their producers in callbacks that run
            # after this task: one turn of the loop lets a fetch that is about to start
            # carry them (it wakes this task again when it is done).
            await asyncio.sleep(0)
            while self._refused or (self._pending and not any(about() for about in self._carriers)):
                apart = bool(self._refused)
                batch = self._refused.pop() if apart else self.take()
                try:
                    owned = await _queries.ack_jobs(self._pool, self._node, batch)
                except asyncio.CancelledError:
                    self._put_back(batch, apart)
                    raise
                except Exception as exc:
                    if _queries.refused(exc):
                        if not apart:
                            self._in_flight -= 1
                        self._split(batch, exc)
                        continue
                    self._put_back(batch, apart)
                    failures += 1
                    log.warning(
                        "acker.write_failed",
                        error=_db.redact(str(exc))[:500],
                        pending=len(self._pending),
                        failures=failures,
                    )
                    await asyncio.sleep(
                        min(2.0, 0.02 * 2 ** min(failures, 8)) * random.uniform(0.5, 1.0)
                    )
                    continue
                failures = 0
                if apart:
                    self._written_apart(batch, owned)
                else:
                    self.settle(batch, owned)
            self._wake.clear()  # set by settle() above: what is pending now waits on a fetch
            if not self._pending and not self._in_flight:
                self._idle.set()

    def _put_back(self, batch: list[Ack], apart: bool) -> None:
        if apart:
            self._refused.append(batch)
        else:
            self.restore(batch)

    def _split(self, batch: list[Ack], exc: Exception) -> None:
        """Halve a refused batch; a refused ack alone is replaced by a failed attempt."""
        if len(batch) > 1:
            half = len(batch) // 2
            self._refused += [batch[half:], batch[:half]]
            return
        [ack] = batch
        reason = _db.redact(str(exc))[:500]
        stage = self._replaced.get(ack.job_id, 0)
        log.error("ack.refused", job_id=ack.job_id, state=ack.state, error=reason, stage=stage)
        if stage == 0:
            replacement = _executor.refused_ack(ack, reason)
        elif stage == 1:  # not even the failed attempt: end the job without its errors
            replacement = Ack(ack.job_id, ack.attempt, "discarded", final=True)
        else:
            log.error("ack.dropped", job_id=ack.job_id, reason="refused by the database")
            self._replaced.pop(ack.job_id, None)
            return
        self._replaced[ack.job_id] = stage + 1
        self._refused.append([replacement])

    def _written_apart(self, batch: list[Ack], owned: set[int]) -> None:
        self.flushes += 1
        self.written += len(owned)
        for ack in batch:
            self._replaced.pop(ack.job_id, None)
