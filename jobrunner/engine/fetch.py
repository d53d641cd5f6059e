"""A producer's fetches: claim jobs for its free slots (writing pending acks in the same
statement), under cluster-wide limits when the queue has them, and recover or back off when
a fetch fails."""

from __future__ import annotations

import asyncio
import random
import secrets
from typing import TYPE_CHECKING

import structlog

from jobrunner.core import telemetry as _telemetry
from jobrunner.core.job import Job
from jobrunner.core.limits import Limits
from jobrunner.db import connection as _db
from jobrunner.db import queries as _queries
from jobrunner.db.queries import Ack
from jobrunner.engine import executor as _executor
from jobrunner.engine.acker import Acker
from jobrunner.engine.executor import RunKey, run_key

if TYPE_CHECKING:
    from jobrunner.db.connection import Connected as Client

log = structlog.get_logger("jobrunner.producer")

MAX_FETCHES = 2  # fetches of one queue in flight at once (the second only under load)


class Fetcher:
    """The fetching half of `Producer`: its state is the producer's own."""

    queue: str
    limit: int
    limits: Limits
    paused: bool
    fetches: int
    carried: int
    _client: Client
    _node: str
    _acker: Acker
    _poll_interval_s: float
    _wake: asyncio.Event
    _more: bool
    _stopping: bool
    _running: dict[RunKey, tuple[Job, asyncio.Task[None]]]
    _unsettled: list[str]
    _fetches: set[asyncio.Task[None]]
    _claiming: set[asyncio.Task[None]]
    _reserved: int
    _busy: bool
    _failures: int
    _held: bool
    _rate_timer: asyncio.TimerHandle | None

    if TYPE_CHECKING:

        def wake(self, _payload: str | None = None) -> None: ...
        def _dispatch(self, job: Job) -> None: ...
        def _place(self, jobs: list[Job], started: int) -> None: ...
        def _slot_release_due(self) -> bool: ...
        def _slot_ask_due(self, demand: int) -> bool: ...
        async def _ask_slots(
            self,
            demand: int,
            started: int,
            acks: list[Ack],
            claim: str,
            unreadable: list[_queries.Unreadable],
        ) -> tuple[set[int], list[Job]]: ...
        @property
        def run_limit(self) -> int: ...
        @property
        def ahead_limit(self) -> int: ...
        @property
        def ahead(self) -> int: ...

    def _demand(self) -> tuple[int, int]:
        """How many jobs a fetch now would claim, and how many of them start at once: the
        free slots, then the room in the buffer of jobs claimed ahead.

        Refilling only by half batches was tried: with the buffer full, no fetch was about
        to follow, so the acks went out in statements of their own (more CPU per job)."""
        held = len(self._running) + self.ahead + self._reserved
        return self.run_limit + self.ahead_limit - held, max(0, self.run_limit - held)

    def _overlap(self) -> bool:
        """Under load (the last fetch came back full) a queue that claims ahead may start a
        second fetch while one is in flight, for the slots that free up meanwhile: two
        round trips overlap, so a batch's work never waits for the whole of the next claim.
        Only for a whole batch (jobs that end one by one, as sync ones do, would otherwise
        split the claims into many small statements), and never for a queue with
        cluster-wide limits or a dispatch cooldown (no buffer)."""
        return (
            self._busy
            and self.ahead_limit > 0
            and 0 < len(self._fetches) < MAX_FETCHES
            and self._demand()[0] >= self.limit
        )

    def _launch(self) -> bool:
        """Start a fetch for the free slots and the buffer's room, unless one is in flight
        (two under load); whether it started."""
        demand, started = self._demand()
        ready = self._overlap() if self._fetches else self._more
        if self.paused or not ready or self._stopping or demand <= 0:
            if self._slot_release_due():  # an ask for slots alone, carrying the acks
                self._start_fetch(0, 0)
                return True
            self._acker.poke()  # no fetch to carry the acks
            return False
        # Cleared before the fetch so that a wake() during it is not lost.
        self._more = False
        self._start_fetch(demand, started)
        return True

    async def fetch_now(self) -> int:
        """Claim jobs for the free slots in the calling task and start them (their tasks
        begin at the next turn of the loop); how many it claimed."""
        demand = self.limit - len(self._running) - self.ahead - self._reserved
        if demand <= 0:
            return 0
        self._reserved += demand
        before = len(self._running)
        await self._fetch(demand, demand, self._acker.take())
        return len(self._running) - before

    def _start_fetch(self, demand: int, started: int) -> None:
        self._reserved += demand
        acks = self._acker.take()  # now: the acker would write them before the task runs
        task = asyncio.create_task(
            self._fetch(demand, started, acks), name=f"jobrunner.fetch.{self.queue}"
        )
        self._fetches.add(task)
        self._claiming.add(task)
        task.add_done_callback(self._fetches.discard)
        task.add_done_callback(self._claiming.discard)

    async def _fetch(self, demand: int, started: int, acks: list[Ack]) -> None:
        """Claim up to `demand` jobs, writing `acks` in the same statement, and start them:
        the first `started` at once, the others claimed ahead (as slots free up)."""
        claim = secrets.token_hex(8)
        unreadable: list[_queries.Unreadable] = []
        try:
            owned, jobs = await self._claim(demand, started, acks, claim, unreadable)
        except BaseException as exc:
            if _queries.refused(exc):
                self._acker.refuse(acks)  # written apart, so that one bad ack stops nothing
            else:
                self._acker.restore(acks)
            self._unsettled.append(claim)  # it may have committed: recovered by claim id
            if not isinstance(exc, Exception):
                raise
            await self._failed(exc)  # backs off with its slots still reserved
            self._more = True
            return
        finally:
            # Out of the set before the loop runs again (a done callback would come after it).
            self._reserved -= demand
            self._fetches.discard(asyncio.current_task())
            self._wake.set()
        self._failures = 0
        self._acker.settle(acks, owned)
        self.fetches += 1
        self.carried += len(acks)
        _telemetry.batch("fetch", self.queue, len(jobs))
        if demand:  # (not an ask for slots alone)
            self._busy = len(jobs) + len(unreadable) == demand
        if self._busy:
            self._more = True
        if unreadable:
            self._set_aside(unreadable)
        if self.paused and jobs:  # paused while the claim was under way: start none
            await self._give_back(jobs)
            return
        self._place(jobs, started)

    async def _claim(
        self,
        demand: int,
        started: int,
        acks: list[Ack],
        claim: str,
        unreadable: list[_queries.Unreadable],
    ) -> tuple[set[int], list[Job]]:
        """The claim statement for this queue's limits, carrying `acks`: a queue counted in
        slots claims as one without limits between its asks for slots."""
        pool = self._client.pool
        if self.limits.slotted:
            if self._slot_ask_due(demand):
                return await self._ask_slots(demand, started, acks, claim, unreadable)
        elif self.limits:
            return await self._claim_limited(demand, acks, claim, unreadable)
        if not acks:  # the lighter statement: a wake-up's fetch, on an idle node
            jobs = await _queries.fetch_jobs(
                pool,
                queue=self.queue,
                demand=demand,
                node=self._node,
                claim=claim,
                started=started,
                unreadable=unreadable,
            )
            return set(), jobs
        return await _queries.ack_and_fetch_jobs(
            pool,
            self._node,
            acks,
            queue=self.queue,
            demand=demand,
            claim=claim,
            started=started,
            unreadable=unreadable,
        )

    async def _claim_limited(
        self, demand: int, acks: list[Ack], claim: str, unreadable: list[_queries.Unreadable]
    ) -> tuple[set[int], list[Job]]:
        """Write the acks and claim under the cluster-wide limits, in one statement (the
        slots the acks free count for the claim)."""
        pool = self._client.pool
        owned, jobs = await _queries.ack_and_claim_limited(
            pool,
            self._node,
            acks,
            queue=self.queue,
            demand=demand,
            claim=claim,
            limits=self.limits,
            unreadable=unreadable,
        )
        self._held = len(jobs) + len(unreadable) < demand
        rate = self.limits.rate_limit
        if self._held and rate is not None and self._rate_timer is None:
            # Look again when the window's oldest start leaves it, not only at the poll.
            wait = await _queries.rate_wait(pool, queue=self.queue, rate=rate)
            if wait is not None and wait < self._poll_interval_s:
                loop = asyncio.get_running_loop()
                self._rate_timer = loop.call_later(max(wait, 0.0) + 0.005, self._rate_opened)
        return owned, jobs

    def _rate_opened(self) -> None:
        self._rate_timer = None
        self.wake()

    def _set_aside(self, unreadable: list[_queries.Unreadable]) -> None:
        """Discard claimed jobs that cannot be decoded, with why: never claimed again."""
        for job_id, attempt, claim, exc in unreadable:
            log.error("job.unreadable", job_id=job_id, queue=self.queue, error=repr(exc)[:200])
            self._acker.push(_executor.unreadable_ack(job_id, attempt, claim, exc))

    async def _give_back(self, jobs: list[Job]) -> None:
        """Jobs claimed for a queue that is paused now: back to available, attempt undone."""
        acks = [_executor.interrupted(job) for job in jobs]
        try:
            await _queries.ack_jobs(self._client.pool, self._node, acks)
        except Exception as exc:  # the acker retries them; none of them starts meanwhile
            log.warning("producer.give_back_failed", queue=self.queue, error=_db.redact(str(exc)))
            for ack in acks:
                self._acker.push(ack)
        log.info("producer.paused_claim_returned", queue=self.queue, job_ids=[j.id for j in jobs])
        self._more = True

    async def _failed(self, exc: Exception) -> None:
        """Log a failed fetch and back off before the next."""
        self._acker.poke()
        self._failures += 1
        log.warning(
            "producer.fetch_failed",
            queue=self.queue,
            error=_db.redact(str(exc))[:500],
            failures=self._failures,
        )
        if not self._stopping:
            await asyncio.sleep(
                min(self._poll_interval_s, 0.02 * 2 ** min(self._failures, 8))
                * random.uniform(0.5, 1.0)
            )

    async def _recover(self) -> None:
        """Run what fetches whose reply was lost claimed: they may have committed."""
        claims = list(self._unsettled)
        unreadable: list[_queries.Unreadable] = []
        jobs = await _queries.claimed_jobs(
            self._client.pool, node=self._node, claims=claims, unreadable=unreadable
        )
        self._unsettled = [claim for claim in self._unsettled if claim not in claims]
        self._set_aside(unreadable)
        if jobs:
            log.warning(
                "producer.claim_recovered", queue=self.queue, job_ids=[job.id for job in jobs]
            )
        if self.paused and jobs:
            await self._give_back([job for job in jobs if run_key(job) not in self._running])
            return
        # Any of them may have been claimed ahead: each writes that it started.
        self._place([job for job in jobs if run_key(job) not in self._running], 0)
