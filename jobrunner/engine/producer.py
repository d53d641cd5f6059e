"""One producer per queue: claims jobs when woken and runs them under the queue's limit."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict, deque
from functools import partial
from typing import TYPE_CHECKING

import structlog

from jobrunner.core import threads as _threads
from jobrunner.core.config import QueueConfig
from jobrunner.core.job import Job
from jobrunner.core.limits import Limits, RateLimit
from jobrunner.engine import executor as _executor
from jobrunner.engine.acker import Acker
from jobrunner.engine.ahead import AheadBuffer
from jobrunner.engine.executor import RunKey, run_key
from jobrunner.engine.fetch import Fetcher
from jobrunner.engine.slots import SlotHolder

if TYPE_CHECKING:
    from jobrunner.db.connection import Connected as Client

log = structlog.get_logger("jobrunner.producer")

SHUTDOWN, CANCELLED, ABANDONED, LOST = _executor.INTERRUPTED, "cancelled", "abandoned", "lost"
STUBBORN_WAIT_S = 5.0  # how long interrupted jobs get to honour their cancellation


class Producer(Fetcher, AheadBuffer, SlotHolder):
    """Claims up to `limit - running` jobs per fetch, plus up to a batch ahead, and runs
    each in its own task.

    Woken by NOTIFY (an insert into its queue), by a finished job when the last fetch
    was full, or by its poll timer, so a lost notification only costs latency. Its fetches
    are in `engine.fetch`, its jobs claimed ahead in `engine.ahead`, the slots of a global
    limit it holds in `engine.slots`.
    """

    _task: asyncio.Task[None] | None = None

    def __init__(
        self,
        queue: str,
        config: QueueConfig,
        *,
        client: Client,
        node: str,
        acker: Acker,
        poll_interval_s: float = 1.0,
        paused: bool = False,
        threads: _threads.ThreadPool | None = None,
        ahead_max_age_s: float = 15.0,
        claim_ahead: bool = True,
    ) -> None:
        self.queue = queue
        self.limit = config.limit
        self.limits = Limits(config.global_limit, config.rate_limit, config.partition)
        self.dispatch_cooldown_s = config.dispatch_cooldown_s
        self.paused = paused
        self._client = client
        self._node = node
        self._acker = acker
        self._threads = threads
        self._poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()
        self._wake.set()  # the first fetch happens at once
        self._more = True
        self._stopping = False
        self._interrupting = False
        # Runs, not jobs: a node paused past its lease may claim its own rescued job again
        # while the old run still goes on; each is stopped and acked as itself.
        self._running: dict[RunKey, tuple[Job, asyncio.Task[None]]] = {}
        self._cancel_reasons: dict[RunKey, str] = {}
        self._latest: dict[int, RunKey] = {}  # job id -> its latest run here
        self._ahead: OrderedDict[RunKey, tuple[Job, bool, float]] = OrderedDict()
        self._ahead_max_age_s = ahead_max_age_s  # older buffered jobs go back, never start
        self.claim_ahead = claim_ahead
        self._to_mark: deque[tuple[float, Job]] = deque()
        self._mark_timer: asyncio.TimerHandle | None = None
        self._unsettled: list[str] = []  # fetches whose reply was lost: they may have claimed
        self._drained = asyncio.Event()
        self._drained.set()
        self._waiting = False  # in the loop's wait, not fetching or sleeping
        self._fetches: set[asyncio.Task[None]] = set()
        self._claiming: set[asyncio.Task[None]] = set()  # fetches until their jobs are placed
        self._reserved = 0  # slots that fetches in flight may fill
        self._busy = False  # the last fetch came back full
        self._failures = 0
        self._held = False  # the last limited claim came back short: a finished job frees room
        self._rate_timer: asyncio.TimerHandle | None = None
        self.slots = 0
        self._slot_cap: int | None = None
        self._slot_asking = False
        self._slot_asked = 0.0
        self._slot_timer: asyncio.TimerHandle | None = None
        self.fetches = 0
        self.carried = 0  # acks written by this producer's fetches
        acker.add_carrier(self.about_to_fetch)

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def alive(self) -> bool:
        """Its loop runs (or it was never started)."""
        return self._task is None or not self._task.done()

    def running_jobs(self) -> set[int]:
        """The jobs running here or claimed ahead."""
        return {key[0] for key in self._running} | {key[0] for key in self._ahead}

    def running_runs(self) -> list[RunKey]:
        """The runs under way here or claimed ahead: (job id, claim id)."""
        return [*self._running, *self._ahead]

    def about_to_fetch(self) -> bool:
        """A fetch will start soon, with free slots to fill: it carries the pending acks.

        Soon is when the loop has been woken with more jobs to fetch, or, under load, when
        a fetch in flight returns (every fetch's return pokes the acker: if no fetch
        follows, the acker writes them).
        """
        if self.paused or self._stopping:
            return False
        if self._busy and self._fetches:
            # the fetch in flight came after a full one (even if it reserved every free slot
            # and the buffer's room: jobs end meanwhile, and its return pokes the acker)
            return True
        if self._demand()[0] <= 0:
            return False
        return self._waiting and self._wake.is_set() and self._more

    def wake(self, _payload: str | None = None) -> None:
        """Something may be available: look now."""
        self._more = True
        self._wake.set()

    def pause(self) -> None:
        self.paused = True
        self._give_back_ahead()
        self._acker.poke()

    async def settle(self) -> None:
        """Wait for the fetches in flight: once paused, what they claimed goes back to
        available, so after this no new job of the queue starts here until a resume."""
        while self._claiming:
            await asyncio.gather(*self._claiming, return_exceptions=True)

    def resume(self) -> None:
        self.paused = False
        self.wake()

    def scale(self, limit: int) -> None:
        """Change the limit; scaling down lets running jobs finish (jobs claimed ahead
        beyond the new limit go back)."""
        self.limit = limit
        self._start_ahead()
        self.wake()

    def scale_global(self, global_limit: int | None) -> None:
        """Change the cluster-wide limit this node claims under (None: the configured one)."""
        self.limits = dataclasses.replace(self.limits, global_limit=global_limit)
        self._reset_slots()
        self._start_ahead()  # a limited queue holds none ahead, unless counted in slots
        self.wake()

    def scale_rate(self, rate_limit: RateLimit | None) -> None:
        """Change the rate limit this node claims under (None: none)."""
        self.limits = dataclasses.replace(self.limits, rate_limit=rate_limit)
        self._reset_slots()
        self._start_ahead()
        self.wake()

    def cancel_job(self, job_id: int, reason: str = CANCELLED) -> bool:
        """Stop every run of a job that no longer belongs here (it was cancelled).

        No ack is written for them. False if none runs here.
        """
        runs = [key for key in [*self._running, *self._ahead] if key[0] == job_id]
        return any([self.cancel_run(key, reason) for key in runs])

    def cancel_run(self, key: RunKey, reason: str = LOST) -> bool:
        """Stop one run that no longer belongs here (cancelled, rescued, claimed again).

        No ack is written for it. False if it does not run here.
        """
        if self._drop_ahead(key):
            return True
        running = self._running.get(key)
        if running is None or running[1].done() or key in self._cancel_reasons:
            return False  # cancelling twice would interrupt the worker's own clean-up
        self._cancel_reasons[key] = reason
        running[1].cancel()
        return True

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"jobrunner.producer.{self.queue}")

    def halt(self) -> None:
        """Stop fetching; running jobs go on."""
        self._stopping = True
        self._give_back_ahead()
        for timer in (self._rate_timer, self._slot_timer):
            if timer is not None:
                timer.cancel()
        self._rate_timer = self._slot_timer = None
        self._wake.set()
        self._acker.poke()

    async def stop(self, grace_s: float = 15.0) -> None:
        """Stop fetching, let running jobs finish for `grace_s`, then interrupt the rest.

        Interrupted jobs go back to available with the attempt not counted.
        """
        self.halt()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._running and not self._interrupting:
            log.info(
                "producer.draining", queue=self.queue, running=len(self._running), grace_s=grace_s
            )
            try:
                await asyncio.wait_for(asyncio.shield(self._drained.wait()), grace_s)
            except TimeoutError:
                log.warning("producer.grace_expired", queue=self.queue, running=len(self._running))
        await self._interrupt_and_wait()

    def interrupt(self) -> None:
        """Stop fetching and cancel every running job now; they go back to the queue."""
        self.halt()
        self._interrupting = True
        for _, task in self._running.values():
            task.cancel()

    async def _interrupt_and_wait(self) -> None:
        self.interrupt()
        if not self._running:
            return
        running = list(self._running.values())
        await asyncio.wait([task for _, task in running], timeout=STUBBORN_WAIT_S)
        for job, task in running:
            if not task.done():
                # The job ignores its cancellation: it goes back now, as the node is stopping.
                log.error("job.ignored_cancel", job_id=job.id, queue=self.queue)
                self._cancel_reasons[run_key(job)] = ABANDONED
                self._acker.push(_executor.interrupted(job))

    async def _loop(self) -> None:
        while not self._stopping:
            self._waiting = True
            if not self._wake.is_set():
                try:
                    # not wait_for: its extra task costs a turn of the loop on every wake
                    async with asyncio.timeout(self._poll_interval_s):
                        await self._wake.wait()
                except TimeoutError:
                    self._more = True
            self._waiting = False
            self._wake.clear()
            if self._stopping:
                break
            if self._unsettled:
                try:
                    await self._recover()
                except Exception as exc:
                    await self._failed(exc)
                    continue
            self._launch()
            if self.dispatch_cooldown_s:
                await asyncio.sleep(self.dispatch_cooldown_s)
        if self._fetches:
            await asyncio.gather(*self._fetches, return_exceptions=True)

    def _dispatch(self, job: Job) -> None:
        key = run_key(job)
        earlier = self._earlier_runs(job)
        task = asyncio.create_task(self._run(job, earlier), name=f"jobrunner.job.{job.id}")
        self._running[key] = (job, task)
        self._drained.clear()
        task.add_done_callback(partial(self._finished, job, key))
        if self._interrupting:  # claimed while an interrupt was under way
            task.cancel()

    def _earlier_runs(self, job: Job) -> list[asyncio.Task[None]]:
        """Older runs of `job` still going here: this claim took it again, so they lost it
        (rescued while this node was paused). They are stopped; the new run waits for them."""
        key = self._latest.get(job.id)
        self._latest[job.id] = run_key(job)
        if key is None or key not in self._running:
            return []
        earlier = [task for k, (_, task) in self._running.items() if k[0] == job.id]
        for k in [k for k in self._running if k[0] == job.id]:
            if self.cancel_run(k, LOST):
                log.warning(
                    "job.lost",
                    job_id=job.id,
                    queue=self.queue,
                    reason="claimed again by this node: the earlier run was rescued",
                )
        return [task for task in earlier if not task.done()]

    async def _run(self, job: Job, earlier: list[asyncio.Task[None]]) -> None:
        _threads.use(self._threads)  # this job's task only: where its sync worker runs
        if earlier:  # never two runs of one job at once on this node
            await asyncio.wait(earlier, timeout=STUBBORN_WAIT_S)
        result = await _executor.execute(job, self._client, self._cancel_reasons)
        self._acker.push(result.ack)

    def _finished(self, job: Job, key: RunKey, task: asyncio.Task[None]) -> None:
        """Bookkeeping for a run's task, however it ended (even cancelled before it began)."""
        running = self._running.get(key)
        if running is not None and running[1] is task:
            del self._running[key]
            if self._latest.get(job.id) == key:
                del self._latest[job.id]
        reason = self._cancel_reasons.pop(key, SHUTDOWN)
        if task.cancelled():
            if reason == SHUTDOWN:
                self._acker.push(_executor.interrupted(job))
            log.log(
                logging.WARNING,
                "job.interrupted",
                job_id=job.id,
                worker=job.worker,
                queue=job.queue,
                attempt=job.attempt,
                reason=reason,
            )
        elif (exc := task.exception()) is not None:  # a bug of ours: still end the attempt
            log.error("job.ack_failed", job_id=job.id, error=repr(exc))
            self._acker.push(_executor.to_ack(job, None, exc, None)[0])
        self._start_ahead()
        if not self._running:
            self._drained.set()
        if self._held and self.limits.global_limit is not None:  # its slot may be what the
            # last limited claim lacked
            self._more = True
        if (self._more or self._overlap() or self._slot_release_due()) and not self._stopping:
            self._wake.set()
