"""A producer's slots of a queue whose only cluster-wide limit is a global limit.

The node holds `slots` of the limit (a row of jobrunner_queue_slots, migration 12) and runs
at most that many of the queue's jobs at once; the jobs it claims ahead wait in its buffer
without one, as in a queue without limits, so the next batch is ready when the current one
ends. Its claims go through the plain claim statement, no lock taken, while its slots stay
as they are; it asks PostgreSQL for slots (under the queue's lock, counted against the limit
with every other node's) only when it could use more, when it gives some back (idle,
paused, or over its fair share while other nodes wait), and every `CHECK_S` to learn
whether other nodes wait.

Safety rests on one rule: the node never runs more jobs than the slots PostgreSQL counts
for it. Before an ask it lowers its own count to what it keeps (never below what it runs);
the reply raises it again, to what PostgreSQL granted. One ask at a time.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from jobrunner.core.job import Job
from jobrunner.core.limits import Limits
from jobrunner.db import queries as _queries
from jobrunner.db.queries import Ack
from jobrunner.engine.executor import RunKey

if TYPE_CHECKING:
    from jobrunner.db.connection import Connected as Client

CHECK_S = 0.1  # a node holding slots asks at least this often while it claims


class SlotHolder:
    """The slots half of `Producer`: its state is the producer's own."""

    queue: str
    limit: int
    limits: Limits
    paused: bool
    _client: Client
    _node: str
    _busy: bool
    _stopping: bool
    _running: dict[RunKey, tuple[Job, asyncio.Task[None]]]
    _fetches: set[asyncio.Task[None]]
    slots: int  # held here: the most jobs of the queue this node runs at once
    _slot_cap: int | None  # its fair share while other nodes wait for slots
    _slot_asking: bool
    _slot_asked: float  # when the last ask returned (monotonic seconds)
    _slot_timer: asyncio.TimerHandle | None

    if TYPE_CHECKING:

        def wake(self, _payload: str | None = None) -> None: ...
        def _start_ahead(self) -> None: ...
        @property
        def ahead(self) -> int: ...

    @property
    def run_limit(self) -> int:
        """How many of the queue's jobs may run here now: the limit, and for a queue counted
        in slots, the slots held (and the fair share while other nodes wait)."""
        if not self.limits.slotted:
            return self.limit
        bound = min(self.limit, self.slots)
        return bound if self._slot_cap is None else min(bound, self._slot_cap)

    def _slot_keep(self) -> int:
        """The slots to keep at the next ask: all of them under load, down to the fair share
        while others wait, down to the jobs here when the queue runs dry; never fewer than
        the jobs running."""
        keep = self.slots if self._slot_cap is None else min(self.slots, self._slot_cap)
        if not self._busy or self.paused or self._stopping:
            keep = min(keep, len(self._running) + self.ahead)
        return max(keep, len(self._running))

    def _slot_ask_due(self, demand: int) -> bool:
        """Whether the next claim (for `demand` jobs) asks for slots: it could use more, it
        gives some back, or it has not asked for `CHECK_S`."""
        if not self.limits.slotted or self._slot_asking:
            return False
        if self._slot_keep() < self.slots:
            return True
        want = min(self.limit, len(self._running) + self.ahead + demand)
        if want > self.slots and (self._slot_cap is None or self.slots < self._slot_cap):
            return True
        return want > 0 and time.monotonic() - self._slot_asked > CHECK_S

    def _slot_release_due(self) -> bool:
        """Slots to give back with no claim to carry them (the queue paused, idle or full):
        an ask of its own, once no fetch is in flight."""
        if not self.limits.slotted or self._slot_asking or self._fetches or self._stopping:
            return False
        have = len(self._running) + self.ahead
        stale = time.monotonic() - self._slot_asked > CHECK_S
        if self._slot_keep() < self.slots:
            if have == 0 or stale:
                return True
            self._ask_again()  # one ask for the jobs that end meanwhile, not one each
            return False
        return min(self.limit, have) > self.slots and stale

    async def _ask_slots(
        self,
        demand: int,
        started: int,
        acks: list[Ack],
        claim: str,
        unreadable: list[_queries.Unreadable],
    ) -> tuple[set[int], list[Job]]:
        """The claim of a queue counted in slots that asks for them (`_slot_ask_due`)."""
        assert self.limits.global_limit is not None
        keep = self._slot_keep()
        self.slots = keep  # until the reply: PostgreSQL counts at least this many for us
        self._slot_asking = True
        try:
            owned, jobs, slots = await _queries.ack_and_claim_slots(
                self._client.pool,
                self._node,
                acks,
                queue=self.queue,
                demand=demand,
                claim=claim,
                started=min(started, max(0, keep - len(self._running))),
                global_limit=self.limits.global_limit,
                limit=self.limit,
                have=len(self._running) + self.ahead,
                keep=keep,
                unreadable=unreadable,
            )
        finally:
            self._slot_asking = False
            self._slot_asked = time.monotonic()
        self.slots, self._slot_cap = slots.held, slots.cap
        if min(self.limit, len(self._running) + self.ahead + len(jobs)) > self.run_limit:
            self._ask_again()  # jobs wait for slots: ask again soon
        return owned, jobs

    def _ask_again(self) -> None:
        if self._slot_timer is None and not self._stopping:
            loop = asyncio.get_running_loop()
            self._slot_timer = loop.call_later(CHECK_S, self._slot_ask_time)

    def _slot_ask_time(self) -> None:
        self._slot_timer = None
        self.wake()

    def _reset_slots(self) -> None:
        """The queue's limits changed: ask at the next claim."""
        self._slot_asked = 0.0
        self._slot_cap = None
