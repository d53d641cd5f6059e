"""Runs waiting jobs in this process until none is left: testing helpers and `jobrunner drain`."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog

from jobrunner.core.job import Job
from jobrunner.core.new_job import validate_queue
from jobrunner.db import connection as _db
from jobrunner.db import queries as _queries
from jobrunner.db.queries import Ack
from jobrunner.engine import executor as _executor

if TYPE_CHECKING:
    from jobrunner.db.connection import Connected as Client

log = structlog.get_logger("jobrunner.drain")

BATCH_SIZE = 10
"""Jobs claimed per statement: few, so that a claimed job does not wait long to start."""

CANCEL_CHECK_S = 0.5
"""While a job runs here, how often the drain checks that the job is still its own: a job
cancelled meanwhile (`jobs cancel`) is stopped, as a daemon stops it."""
STUBBORN_WAIT_S = 5.0  # how long a cancelled job gets to honour its cancellation


@dataclass(frozen=True, slots=True)
class DrainResult:
    """How many jobs a drain ran, by outcome, and the exceptions the failed ones raised.

    `failure` counts jobs that raised and will be retried; a job that raised on its last
    attempt counts as `discarded`, as does one that returned `Discard`.

    Example:
        >>> result = await drain_queue(client, "emails")
        >>> result.as_dict()
        {'completed': 2, 'failure': 0, 'snoozed': 0, 'cancelled': 0, 'discarded': 0}
    """

    completed: int = 0
    failure: int = 0
    snoozed: int = 0
    cancelled: int = 0
    discarded: int = 0
    exceptions: tuple[BaseException, ...] = field(default=(), compare=False)

    @property
    def total(self) -> int:
        """How many jobs ran."""
        return self.completed + self.failure + self.snoozed + self.cancelled + self.discarded

    def as_dict(self) -> dict[str, int]:
        """The counts by outcome: completed, failure, snoozed, cancelled, discarded."""
        return {name: getattr(self, name) for name in _executor.OUTCOMES}


class Tally:
    """The running counts of one drain, and the jobs it must not run again."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(_executor.OUTCOMES, 0)
        self.exceptions: list[BaseException] = []
        self.skip: set[int] = set()
        self.total = 0

    def add(self, result: _executor.Result, *, recursive: bool) -> None:
        self.counts[result.outcome] += 1
        self.total += 1
        if result.exception is not None:
            self.exceptions.append(result.exception)
        # A snoozed job is never run twice in one drain (Snooze(0) would loop for ever); a
        # failed one runs again only in a recursive drain, once its retry is due.
        if result.outcome == _executor.SNOOZED or (
            not recursive and result.outcome == _executor.FAILURE
        ):
            self.skip.add(result.job.id)

    def cancel(self, job: Job) -> None:
        """A job cancelled while it ran here: it counts as cancelled and never runs again."""
        self.counts[_executor.CANCELLED] += 1
        self.total += 1
        self.skip.add(job.id)

    def result(self) -> DrainResult:
        return DrainResult(**self.counts, exceptions=tuple(self.exceptions))


def drain_node() -> str:
    """A node name for one drain: host, pid and a random part."""
    return f"{socket.gethostname()}-{os.getpid()}-drain-{secrets.token_hex(3)}"


# Long: half of it is the docstring of Oban's drain options; the body is short.
async def drain(
    client: Client,
    queues: Sequence[str] | None,
    *,
    with_scheduled: bool | datetime = False,
    with_recursion: bool = False,
    with_safety: bool = True,
    with_limit: int | None = None,
    node: str | None = None,
) -> DrainResult:
    """Run the waiting jobs of `queues` (None: every queue) here, one at a time, until none is left.

    Oban's drain: available jobs run, and scheduled or retryable ones whose time has come.
    `with_scheduled=True` also runs those whose time has not come (a datetime: those due by
    then). Without `with_recursion`, only the jobs inserted before the drain began run, each
    at most once (and the batch callbacks their ends insert); with it, jobs the drained
    jobs insert run too, and a failed job runs again
    while its retry qualifies (with `with_scheduled`, until it has no attempts left). A
    snoozed job never runs twice in one drain. `with_limit` caps how many jobs run. With
    `with_safety=False` the first exception a job raises propagates, once its failure is
    recorded. Paused queues are drained too.

    Jobs are claimed with SKIP LOCKED under the node name `node` (default: a fresh one), whose
    row is registered and heartbeated meanwhile so that no rescuer takes its jobs for orphans;
    live daemons may run beside it. A claimed job left unrun by an exception or a cancellation
    goes back to available, its attempt not counted.

    Example:
        >>> result = await drain(client, ["emails"], with_scheduled=True)
        >>> result.completed, result.failure
    """
    names = _queue_names(queues)
    if with_limit is not None and (
        not isinstance(with_limit, int) or isinstance(with_limit, bool) or with_limit < 0
    ):
        raise ValueError(f"with_limit must be an integer >= 0 or None, got {with_limit!r}")
    all_scheduled = with_scheduled is True
    until = with_scheduled if isinstance(with_scheduled, datetime) else None
    tally = Tally()
    name = node or drain_node()
    async with node_lease(client, name):
        max_id = None if with_recursion else await _queries.max_job_id(client.pool)
        await run_waiting(
            client,
            names,
            name,
            tally,
            all_scheduled=all_scheduled,
            until=until,
            max_id=max_id,
            limit=with_limit,
            safe=with_safety,
            recursive=with_recursion,
        )
    return tally.result()


async def run_waiting(
    client: Client,
    names: list[str] | None,
    node: str,
    tally: Tally,
    *,
    all_scheduled: bool,
    until: datetime | None = None,
    max_id: int | None = None,
    limit: int | None = None,
    safe: bool = True,
    recursive: bool = True,
) -> int:
    """Claim and run the waiting jobs of `names` under `node` until none is left (or
    `limit` ran in all, counting `tally`'s); how many ran in this call."""
    before = tally.total
    while limit is None or tally.total < limit:
        demand = BATCH_SIZE if limit is None else min(BATCH_SIZE, limit - tally.total)
        jobs = await _queries.drain_jobs(
            client.pool,
            queues=names,
            demand=demand,
            node=node,
            all_scheduled=all_scheduled,
            until=until,
            max_id=max_id,
            skip=sorted(tally.skip),
        )
        if not jobs:
            break
        await _run(client, jobs, node, tally, safe=safe, recursive=recursive)
    return tally.total - before


def _queue_names(queues: Sequence[str] | None) -> list[str] | None:
    if queues is None:
        return None
    names = [queues] if isinstance(queues, str) else list(queues)
    if not names:
        raise ValueError("queues must name at least one queue, or be None for every queue")
    return [validate_queue(name) for name in names]


async def _ack(client: Client, node: str, ack: Ack) -> None:
    """Write one outcome; one the database refuses is written as a failed attempt instead."""
    try:
        await _queries.ack_jobs(client.pool, node, [ack])
    except Exception as exc:
        if not _queries.refused(exc):
            raise
        reason = _db.redact(str(exc))[:500]
        await _queries.ack_jobs(client.pool, node, [_executor.refused_ack(ack, reason)])


async def _run(
    client: Client, jobs: Sequence[Job], node: str, tally: Tally, *, safe: bool, recursive: bool
) -> None:
    """Run claimed jobs in order, acking each at once; release the unrun ones on the way out."""
    pending = list(jobs)
    try:
        while pending:
            result = await _execute(client, pending[0], node)
            job = pending.pop(0)
            if result is None:  # cancelled while it ran: the database already says so
                tally.cancel(job)
                continue
            await _ack(client, node, result.ack)
            tally.add(result, recursive=recursive)
            if not safe and result.exception is not None:
                raise result.exception
    finally:
        if pending:
            await asyncio.shield(_release(client, node, pending))


async def _execute(client: Client, job: Job, node: str) -> _executor.Result | None:
    """Run one attempt, checking meanwhile that the job is still this drain's; None when it
    was cancelled (or taken away) while it ran, and its task stopped."""
    reasons: dict[_executor.RunKey, str] = {}
    task = asyncio.create_task(
        _executor.execute(job, client, reasons), name=f"jobrunner.job.{job.id}"
    )
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=CANCEL_CHECK_S)
            if task.done() or await _still_ours(client, job, node):
                continue
            reasons[_executor.run_key(job)] = "cancelled"
            task.cancel()
            await asyncio.wait({task}, timeout=STUBBORN_WAIT_S)
            log.info("job.cancelled_in_drain", job_id=job.id, queue=job.queue, node=node)
            return None
    finally:
        if not task.done():  # the drain itself is cancelled: so is the job
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return task.result()


async def _still_ours(client: Client, job: Job, node: str) -> bool:
    try:
        run = _executor.run_key(job)
        return run in await _queries.owned_jobs(client.pool, runs=[run], node=node)
    except Exception as exc:  # the database is away: keep running, check again later
        log.warning("drain.check_failed", job_id=job.id, error=_db.redact(str(exc)))
        return True


async def _release(client: Client, node: str, jobs: Sequence[Job]) -> None:
    try:
        await _queries.ack_jobs(client.pool, node, [_executor.interrupted(job) for job in jobs])
    except Exception as exc:  # the rescuer puts them back once the node's lease expires
        log.warning(
            "drain.release_failed", node=node, jobs=[j.id for j in jobs], error=_db.redact(str(exc))
        )


@asynccontextmanager
async def node_lease(client: Client, node: str) -> AsyncIterator[None]:
    """Keep a node row for `node` alive (registered, heartbeated, then removed) meanwhile.

    It serves no queue, so control commands do not wait for it; the rescuer leaves its jobs.
    """
    settings = client.settings
    await _queries.register_node(
        client.pool,
        name=node,
        host=socket.gethostname(),
        pid=os.getpid(),
        queues="{}",
        lease_s=settings.node_lease_s,
    )
    task = asyncio.create_task(_heartbeat(client, node), name="jobrunner.drain_heartbeat")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.shield(_remove(client, node))


async def _heartbeat(client: Client, node: str) -> None:
    settings = client.settings
    while True:
        await asyncio.sleep(settings.heartbeat_interval_s)
        try:
            alive = await _queries.heartbeat_node(
                client.pool, name=node, queues="{}", lease_s=settings.node_lease_s
            )
            if not alive:
                await _queries.register_node(
                    client.pool,
                    name=node,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    queues="{}",
                    lease_s=settings.node_lease_s,
                )
        except Exception as exc:
            log.warning("drain.heartbeat_failed", node=node, error=_db.redact(str(exc)))


async def _remove(client: Client, node: str) -> None:
    try:
        await _queries.remove_node(client.pool, node)
    except Exception as exc:
        log.warning("drain.remove_node_failed", node=node, error=_db.redact(str(exc)))


async def run_inserted(client: Client, inserted: Sequence[Job], *, conn: Any = None) -> list[Job]:
    """Testing inline mode: run the jobs just inserted, now, here; return them as they ended.

    Scheduled jobs run at once too, as in Oban. Outcomes are written as the daemon writes
    them: a failure leaves the job retryable. Jobs inserted on `conn` inside an open
    transaction are not visible to other connections yet: they are left to a later drain.
    """
    in_transaction = getattr(conn, "is_in_transaction", None)
    waiting = [job.id for job in inserted if not job.conflict]
    if not waiting or (in_transaction is not None and in_transaction()):
        return list(inserted)
    node = f"{_executor.inline_node()}-{secrets.token_hex(3)}"
    async with node_lease(client, node):
        claimed = await _queries.claim_jobs(client.pool, ids=waiting, node=node)
        await _run(client, claimed, node, Tally(), safe=True, recursive=True)
    ended = []
    for job in inserted:
        fresh = None if job.conflict else await _queries.get_job(client.pool, job.id)
        ended.append(fresh or job)
    return ended


async def run_inline(client: Client, inserted: Sequence[Job], conn: Any = None) -> list[Job]:
    """Testing inline mode: run each inserted job now, in this task; return them as they ended.

    Jobs inserted on `conn` inside an open transaction are left for a drain (see
    `run_inserted`).
    """
    return await run_inserted(client, inserted, conn=conn)
