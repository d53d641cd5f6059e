"""`jobrunner drain`: run every waiting job of some queues until none is left, for CI and deploys.

A queue served by a live node (where it is not paused) is drained by those nodes: this
process wakes them, stages scheduled jobs when asked, and watches the queue empty. Any
other queue is drained here, by `_drain.drain`, with the workers of `--app`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jobrunner.core.errors import JobRunnerError, UnknownWorker
from jobrunner.core.job import Job, JobState
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


async def drain(
    client: Client,
    queues: Sequence[str] | None = None,
    *,
    with_scheduled: bool = False,
    timeout_s: float | None = None,
) -> DrainReport:
    """Run the waiting jobs of `queues` (None: every queue) until none is left.

    Raises DrainTimeout after `timeout_s` seconds (None: no limit), naming what was left.
    """
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"timeout_s must be seconds > 0, got {timeout_s!r}")
    names = await _queues(client, queues)
    by_nodes = await _served(client, names)
    here = tuple(q for q in names if q not in by_nodes)
    await _check_workers(client, here, with_scheduled)
    try:
        async with asyncio.timeout(timeout_s):
            parts = await asyncio.gather(
                _through_nodes(client, sorted(by_nodes), with_scheduled=with_scheduled),
                _here(client, here, with_scheduled=with_scheduled),
            )
    except TimeoutError:
        left = await _queries.count_waiting(client.pool, queues=names, states=WAITING)
        what = ", ".join(f"{n} in {q!r}" for q, n in left.items()) or "none waiting"
        raise DrainTimeout(
            f"drain timed out after {timeout_s:g}s (jobs left: {what}); "
            "raise --timeout or check the nodes with 'jobrunner status'"
        ) from None
    total = {k: parts[0][k] + parts[1][k] for k in parts[0]}
    return DrainReport(**total, with_scheduled=with_scheduled, by_nodes=by_nodes, here=here)


async def _queues(client: Client, queues: Sequence[str] | None) -> list[str]:
    if queues is not None:
        names = list(dict.fromkeys(queues))
        for name in names:
            await _commands.check_queue(client, name)
        return names
    counts = await _queries.count_jobs(client.pool)
    waiting = {q for q, by_state in counts.items() if any(by_state.get(s) for s in WAITING)}
    return sorted(waiting | {w.queue for w in registered().values()})


async def _served(client: Client, names: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """queue -> the live nodes where it runs unpaused (queues with none are left out)."""
    nodes = [n for n in await _queries.status_nodes(client.pool) if n.live]
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


async def _here(client: Client, queues: Sequence[str], *, with_scheduled: bool) -> dict[str, int]:
    if not queues:
        return _counts()
    result = await _drain.drain(
        client, list(queues), with_scheduled=with_scheduled, with_recursion=True, with_safety=True
    )
    return _counts(
        completed=result.completed,
        retried=result.failure,
        failed=result.discarded,
        cancelled=result.cancelled,
        snoozed=result.snoozed,
    )


async def _through_nodes(
    client: Client, queues: Sequence[str], *, with_scheduled: bool
) -> dict[str, int]:
    """Wake the nodes, stage scheduled jobs if asked, and wait until the queues are empty."""
    if not queues:
        return _counts()
    states = WAITING if with_scheduled else ("available", "executing")
    pool = client.pool
    baseline = await _queries.drain_baseline(pool, queues=queues, states=states)
    for queue in queues:
        await _commands.issue(
            client, DRAIN, queue=queue, payload={"with_scheduled": with_scheduled}, timeout_s=0
        )
    while True:
        if with_scheduled:
            await _queries.stage_queues(pool, queues, since=baseline.started_at)
        left = await _queries.count_waiting(
            pool, queues=queues, states=states, since=baseline.started_at
        )
        if not left:
            break
        await asyncio.sleep(POLL_S)
    return _outcomes(
        await _queries.drain_outcomes(pool, queues=queues, baseline=baseline), baseline
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
