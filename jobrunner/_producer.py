"""One producer per queue: claims jobs when woken and runs them under the queue's limit."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING

import structlog

from . import _db, _executor, _queries
from ._acker import Acker
from .config import QueueConfig
from .job import Job

if TYPE_CHECKING:
    from .client import Client

log = structlog.get_logger("jobrunner.producer")

SHUTDOWN, CANCELLED = "shutdown", "cancelled"


class Producer:
    """Claims up to `limit - running` jobs per fetch and runs each in its own task.

    Woken by NOTIFY (an insert into its queue), by a finished job when the last fetch
    was full, or by its poll timer, so a lost notification only costs latency.
    """

    _task: asyncio.Task[None] | None = None

    def __init__(self, queue: str, config: QueueConfig, *, client: Client, node: str,
                 acker: Acker, poll_interval_s: float = 1.0, paused: bool = False) -> None:
        self.queue = queue
        self.limit = config.limit
        self.dispatch_cooldown_s = config.dispatch_cooldown_s
        self.paused = paused
        self._client = client
        self._node = node
        self._acker = acker
        self._poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()
        self._more = True
        self._stopping = False
        self._running: dict[int, asyncio.Task[None]] = {}
        self._cancel_reasons: dict[int, str] = {}
        self._drained = asyncio.Event()
        self._drained.set()
        self.fetches = 0

    @property
    def running(self) -> int:
        return len(self._running)

    def running_ids(self) -> list[int]:
        return list(self._running)

    def wake(self, _payload: str | None = None) -> None:
        """Something may be available: look now."""
        self._more = True
        self._wake.set()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self.wake()

    def scale(self, limit: int) -> None:
        """Change the limit; scaling down lets running jobs finish."""
        self.limit = limit
        self.wake()

    def cancel_job(self, job_id: int) -> bool:
        """Stop a running job because it was cancelled; False if it does not run here."""
        task = self._running.get(job_id)
        if task is None:
            return False
        self._cancel_reasons[job_id] = CANCELLED
        task.cancel()
        return True

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"jobrunner.producer.{self.queue}")

    async def stop(self, grace_s: float = 15.0) -> None:
        """Stop fetching, let running jobs finish for `grace_s`, then interrupt the rest.

        Interrupted jobs go back to available with the attempt not counted.
        """
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._running:
            log.info("producer.draining", queue=self.queue, running=len(self._running),
                     grace_s=grace_s)
            try:
                await asyncio.wait_for(asyncio.shield(self._drained.wait()), grace_s)
            except TimeoutError:
                await self.interrupt()

    async def interrupt(self) -> None:
        """Cancel every running job now; they go back to the queue."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
            except TimeoutError:
                self._more = True
            self._wake.clear()
            if self._stopping:
                break
            try:
                await self._tick()
                failures = 0
            except Exception as exc:
                failures += 1
                log.warning("producer.fetch_failed", queue=self.queue,
                            error=_db.redact(str(exc)), failures=failures)
                await asyncio.sleep(min(self._poll_interval_s, 0.02 * 2 ** min(failures, 8))
                                    * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
                continue
            if self.dispatch_cooldown_s:
                await asyncio.sleep(self.dispatch_cooldown_s)

    async def _tick(self) -> None:
        """One fetch: claim up to the free slots and start them."""
        if self.paused or not self._more:
            return
        demand = self.limit - len(self._running)
        if demand <= 0:
            return
        jobs = await _queries.fetch_jobs(self._client.pool, queue=self.queue, demand=demand,
                                         node=self._node)
        self.fetches += 1
        self._more = len(jobs) == demand
        for job in jobs:
            self._dispatch(job)

    def _dispatch(self, job: Job) -> None:
        task = asyncio.create_task(self._run(job), name=f"jobrunner.job.{job.id}")
        self._running[job.id] = task
        self._drained.clear()

    async def _run(self, job: Job) -> None:
        try:
            result = await _executor.execute(job, self._client)
            self._acker.push(result.ack)
        except asyncio.CancelledError:
            reason = self._cancel_reasons.pop(job.id, SHUTDOWN)
            if reason == SHUTDOWN:
                self._acker.push(_executor.interrupted(job))
            log.log(logging.WARNING, "job.interrupted", job_id=job.id, worker=job.worker,
                    queue=job.queue, attempt=job.attempt, reason=reason)
            raise
        finally:
            del self._running[job.id]
            if not self._running:
                self._drained.set()
            if self._more and not self._stopping:
                self._wake.set()
