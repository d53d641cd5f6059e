"""`jobrunner drain`: run every waiting job of some queues until none is left, for CI and deploys.

A queue served by a live node (where it is not paused) is drained by those nodes: this
process wakes them, stages scheduled jobs when asked, and watches the queue empty. Any
other queue is drained here, by `_drain.run_waiting`, with the workers of `--app`. Who
runs which queue is looked at again every round, and the drain ends only when one look
finds no queue with a job to run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from jobrunner.core.errors import JobRunnerError, UnknownWorker
from jobrunner.core.job import Job, JobState
from jobrunner.core.new_job import validate_queue
from jobrunner.core.worker import registered
from jobrunner.daemon.control import DRAIN
from jobrunner.db import queries as _queries
from jobrunner.db.queries import DrainBaseline
from jobrunner.engine import drain as _drain
from jobrunner.ops import commands as _commands

if TYPE_CHECKING:
    from jobrunner.db.connection import Connected as Client

POLL_S = 0.1
WAITING = ("available", "scheduled", "retryable", "executing")


class DrainTimeout(JobRunnerError):
    """the drain did not finish in time."""


@dataclass(frozen=True, slots=True)
class DrainReport:
    """What a drain ran, by outcome, and who ran each queue.

    `retried` counts failed attempts that were (or will be) retried; `failed` counts jobs
    discarded (out of attempts, or `Discard`). `ok` is false when a job was discarded, or
    when a failed job was left to retry later (a drain without `with_scheduled` does not
    wait for backoffs).

    Example:
        >>> report = await client.drain(["emails"], with_scheduled=True)
        >>> report.ok, report.completed
    """

    completed: int = 0
    retried: int = 0
    failed: int = 0
    cancelled: int = 0
    snoozed: int = 0
    with_scheduled: bool = False
    by_nodes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    here: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.failed == 0 and (self.with_scheduled or self.retried == 0)

    def counts(self) -> dict[str, int]:
        return {
            "completed": self.completed,
            "retried": self.retried,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "snoozed": self.snoozed,
        }


# Long: check, drain under the timeout, then sum the report, in the order they happen.
async def drain(
    client: Client,
    queues: Sequence[str] | None = None,
    *,
    with_scheduled: bool = False,
    timeout_s: float | None = None,
    force: bool = False,
) -> DrainReport:
    """Run the waiting jobs of `queues` (None: every queue) until none is left.

    Queues are drained together: it ends only when one look finds none of them with a job
    to run, so a job a node runs may enqueue into a queue drained here, and the other way
    round. Who runs a queue is decided anew on every round: when the last live node serving
    it stops, this process runs its jobs. `force` accepts a queue nothing knows of yet.
    Raises DrainTimeout after `timeout_s` seconds (None: no limit), naming what was left.
    """
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"timeout_s must be seconds > 0, got {timeout_s!r}")
    names = await _queues(client, queues, force=force)
    run = _Drain(client, names, with_scheduled=with_scheduled)
    await _check_workers(
        client, [q for q in names if q not in await _served(client, names)], with_scheduled
    )
    baseline = await _queries.drain_baseline(client.pool, queues=names, states=run.node_states)
    try:
        async with asyncio.timeout(timeout_s), _drain.node_lease(client, run.node):
            await run.until_empty(baseline.started_at)
    except TimeoutError:
        left = await _queries.count_waiting(client.pool, queues=names, states=WAITING)
        what = ", ".join(f"{n} in {q!r}" for q, n in left.items()) or "none waiting"
        raise DrainTimeout(
            f"drain timed out after {timeout_s:g}s (jobs left: {what}); "
            "raise --timeout or check the nodes with 'jobrunner status'"
        ) from None
    ran_by_nodes = [
        job
        for job in await _queries.drain_outcomes(client.pool, queues=names, baseline=baseline)
        if not job.attempted_by or job.attempted_by[0] != run.node
    ]
    here = run.tally.result()
    nodes = _outcomes(ran_by_nodes, baseline)
    mine = _counts(
        completed=here.completed,
        retried=here.failure,
        failed=here.discarded,
        cancelled=here.cancelled,
        snoozed=here.snoozed,
    )
    total = {k: nodes[k] + mine[k] for k in nodes}
    return DrainReport(
        **total,
        with_scheduled=with_scheduled,
        by_nodes={q: tuple(sorted(n)) for q, n in run.by_nodes.items()},
        here=tuple(q for q in names if q in run.here),
    )


class _Drain:
    """One drain's rounds: wake the nodes serving some queues, run the others here, and
    look at every queue at once until none has a job to run."""

    def __init__(self, client: Client, names: list[str], *, with_scheduled: bool) -> None:
        self.client = client
        self.names = names
        self.with_scheduled = with_scheduled
        self.node = _drain.drain_node()
        self.tally = _drain.Tally()
        self.by_nodes: dict[str, set[str]] = {}
        self.here: set[str] = set()
        self.node_states = WAITING if with_scheduled else ("available", "executing")
        # Here, a job executing elsewhere is not waited for: no node of ours runs it.
        self.here_states = (
            tuple(s for s in WAITING if s != "executing") if with_scheduled else ("available",)
        )
        self._woken: set[str] = set()

    async def until_empty(self, started_at: datetime) -> None:
        while True:
            served = await _served(self.client, self.names)
            local = [q for q in self.names if q not in served]
            await self._wake(served, started_at)
            ran = 0
            if local:
                await _check_workers(
                    self.client, [q for q in local if q not in self.here], self.with_scheduled
                )
                self.here.update(local)
                ran = await _drain.run_waiting(
                    self.client, local, self.node, self.tally, all_scheduled=self.with_scheduled
                )
            if not await self._left(sorted(served), local, started_at):
                return
            if not ran:
                await asyncio.sleep(POLL_S)

    async def _wake(self, served: dict[str, tuple[str, ...]], started_at: datetime) -> None:
        """Tell the nodes serving a queue to look for jobs now; stage scheduled ones if asked."""
        for queue, nodes in served.items():
            self.by_nodes.setdefault(queue, set()).update(nodes)
            if queue not in self._woken:
                self._woken.add(queue)
                await _commands.issue(
                    self.client,
                    DRAIN,
                    queue=queue,
                    payload={"with_scheduled": self.with_scheduled},
                    timeout_s=0,
                )
        if self.with_scheduled and served:
            await _queries.stage_queues(self.client.pool, sorted(served), since=started_at)

    async def _left(self, served: list[str], local: list[str], started_at: datetime) -> bool:
        pool = self.client.pool
        for queues, states in ((served, self.node_states), (local, self.here_states)):
            if queues and await _queries.count_waiting(
                pool, queues=queues, states=states, since=started_at
            ):
                return True
        return False


async def _queues(client: Client, queues: Sequence[str] | None, *, force: bool) -> list[str]:
    if queues is not None:
        names = list(dict.fromkeys(queues))
        for name in names:
            if force:
                validate_queue(name)
            else:
                await _commands.check_queue(client, name)
        return names
    counts = await _queries.count_jobs(client.pool)
    waiting = {q for q, by_state in counts.items() if any(by_state.get(s) for s in WAITING)}
    return sorted(waiting | {w.queue for w in registered().values()})


async def _served(client: Client, names: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """queue -> the live nodes where it runs unpaused (queues with none are left out).

    A node whose lease lapsed less than one more lease ago still counts: a late heartbeat
    (a busy machine) is not a stopped node, and a stopped node removes its row at once.
    """
    nodes = [
        n
        for n in await _queries.status_nodes(client.pool)
        if n.live or n.now < n.expires_at + (n.expires_at - n.heartbeat_at)
    ]
    served = {}
    for name in names:
        running = tuple(
            sorted(n.name for n in nodes if name in n.queues and not n.queues[name].get("paused"))
        )
        if running:
            served[name] = running
    return served


async def _check_workers(client: Client, queues: Sequence[str], with_scheduled: bool) -> None:
    """Refuse to run jobs here whose worker this process does not know: each would fail."""
    if not queues:
        return
    states = WAITING if with_scheduled else ("available",)
    names = await _queries.waiting_workers(client.pool, queues=queues, states=states)
    unknown = [name for name in names if name not in registered()]
    if unknown:
        raise UnknownWorker(
            f"no live node serves {', '.join(repr(q) for q in queues)}, and this process knows "
            f"no worker named {', '.join(repr(w) for w in unknown)}; pass --app MODULE that "
            "defines them, or start a node for the queue"
        )


def _outcomes(jobs: Sequence[Job], baseline: DrainBaseline) -> dict[str, int]:
    """Counts by outcome of the jobs the nodes ran, from their final states and errors."""
    counts = _counts()
    for job in jobs:
        before = baseline.attempts.get(job.id, 0)
        counts["retried"] += sum(
            1
            for e in job.errors
            if before < e.attempt < job.max_attempts and e.traceback is not None
        )
        if job.state is JobState.COMPLETED:
            counts["completed"] += 1
        elif job.state is JobState.DISCARDED:
            counts["failed"] += 1
        elif job.state is JobState.CANCELLED:
            counts["cancelled"] += 1
        elif (
            job.state is JobState.SCHEDULED
            and job.attempted_at is not None
            and job.attempted_at >= baseline.started_at
        ):
            counts["snoozed"] += 1
    return counts


def _counts(**values: int) -> dict[str, int]:
    return {"completed": 0, "retried": 0, "failed": 0, "cancelled": 0, "snoozed": 0, **values}
