"""A producer's jobs claimed ahead: a bounded local buffer, so that the next batch is ready
when the current one ends and the claim overlaps the work instead of taking turns with it.

A job claimed ahead is `executing` under the node's name and claim (the rescuer takes it back
if the node dies, every ack treats it as the node's) with `ahead` set: `jobrunner status`
tells it from a running one. It starts as soon as a slot frees up; if it still runs 50 ms
later the node's next statement clears the flag (an ack to 'executing'), else its outcome
does. A graceful stop, a pause or a smaller
limit gives buffered jobs back to `available`, the attempt not counted. Queues with
cluster-wide limits never claim ahead (a job counts against them once claimed), except a
queue whose only one is a global limit: it is counted in slots the node holds
(`engine.slots`), and a buffered job takes one only when it starts.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING

import structlog

from jobrunner.core.job import Job
from jobrunner.core.limits import Limits
from jobrunner.db.queries import Ack
from jobrunner.engine import executor as _executor
from jobrunner.engine.acker import Acker
from jobrunner.engine.executor import RunKey, run_key

log = structlog.get_logger("jobrunner.producer")

START_MARK_DELAY_S = 0.05  # a job started from the buffer is written as started after this


class AheadBuffer:
    """The claimed-ahead half of `Producer`: its state is the producer's own."""

    queue: str
    limit: int
    limits: Limits
    paused: bool
    dispatch_cooldown_s: float
    _acker: Acker
    _stopping: bool
    _running: dict[RunKey, tuple[Job, asyncio.Task[None]]]
    # run -> (job, flagged ahead in the database, when it was claimed: monotonic seconds)
    _ahead: OrderedDict[RunKey, tuple[Job, bool, float]]
    _ahead_max_age_s: float
    claim_ahead: bool
    _to_mark: deque[tuple[float, Job]]  # (started at, job): started from the buffer, unwritten
    _mark_timer: asyncio.TimerHandle | None

    if TYPE_CHECKING:

        def _dispatch(self, job: Job) -> None: ...
        def wake(self, _payload: str | None = None) -> None: ...
        @property
        def run_limit(self) -> int: ...

    @property
    def ahead_limit(self) -> int:
        """How many jobs this queue may hold claimed ahead: one batch (its limit), none for
        a queue with cluster-wide limits (but a global limit alone) or a dispatch cooldown,
        while paused or stopping, or with `claim_ahead = false`. A queue counted in slots
        holds a batch of what it may run (at least one job: the claim that asks for slots),
        so that a tight global limit does not park other nodes' work here."""
        if (
            not self.claim_ahead
            or (self.limits and not self.limits.slotted)
            or self.dispatch_cooldown_s
            or self.paused
            or self._stopping
        ):
            return 0
        if self.limits.slotted:
            return max(1, min(self.limit, self.run_limit))
        return self.limit

    @property
    def ahead(self) -> int:
        """Jobs claimed ahead, waiting here for a slot."""
        return len(self._ahead)

    def ahead_runs(self) -> list[RunKey]:
        return list(self._ahead)

    def _place(self, jobs: list[Job], started: int) -> None:
        """Start claimed jobs while slots are free (earlier claims first), buffer the rest.

        The first `started` of `jobs` were claimed to start now, the others ahead.
        """
        now = time.monotonic()
        for i, job in enumerate(jobs):
            self._ahead[run_key(job)] = (job, i >= started, now)
        self._start_ahead()

    def _start_ahead(self) -> None:
        """Start buffered jobs in the free slots; give back what no longer fits the buffer."""
        now = time.monotonic()
        while self._ahead and len(self._running) < self.run_limit and not self._stopping:
            if self.paused:
                break
            _, (job, flagged, claimed_at) = self._ahead.popitem(last=False)
            if now - claimed_at > self._ahead_max_age_s:
                # Held past half a lease (an event-loop stall): it may have been rescued.
                self._acker.push(_executor.interrupted(job))
                log.warning("job.ahead_expired", job_id=job.id, queue=job.queue)
                continue
            self._dispatch(job)
            if flagged:  # written if it still runs in a moment: most short jobs end sooner,
                # and their outcome clears the flag (one write instead of two)
                self._to_mark.append((now, job))
                if self._mark_timer is None:
                    self._mark_timer = asyncio.get_running_loop().call_later(
                        START_MARK_DELAY_S, self._mark_started
                    )
        excess = len(self._ahead) - self.ahead_limit
        if excess > 0:
            self._give_back_ahead(excess)

    def _mark_started(self) -> None:
        """Write as started the jobs started from the buffer `START_MARK_DELAY_S` ago or more
        that still run; one timer for all of them (a timer a job cost a heap's work each)."""
        self._mark_timer = None
        now = time.monotonic()
        marks = self._to_mark
        while marks and now - marks[0][0] >= START_MARK_DELAY_S:
            job = marks.popleft()[1]
            if run_key(job) in self._running:
                self._acker.push(started_ack(job))
        if marks:
            self._mark_timer = asyncio.get_running_loop().call_later(
                START_MARK_DELAY_S - (now - marks[0][0]), self._mark_started
            )

    def _give_back_ahead(self, count: int | None = None) -> None:
        """Back to available, attempt undone: the last `count` buffered jobs (None: all)."""
        keys = list(self._ahead)[-count:] if count is not None else list(self._ahead)
        if not keys:
            return
        for key in keys:
            job, _, _ = self._ahead.pop(key)
            self._acker.push(_executor.interrupted(job))
        log.info("producer.ahead_returned", queue=self.queue, count=len(keys))
        self.wake()

    def _drop_ahead(self, key: RunKey) -> bool:
        """Forget a buffered run that is no longer this node's (cancelled, rescued)."""
        return self._ahead.pop(key, None) is not None


def started_ack(job: Job) -> Ack:
    """The ack of a job claimed ahead that has started: it stays executing, not ahead."""
    return Ack(job.id, job.attempt, "executing", claim=_executor.claim_of(job))
