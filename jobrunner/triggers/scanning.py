"""A scheduled trigger's scan: the records matching `where`, read in keyset pages (never the
whole table in memory), each page's jobs inserted in one statement, unique per record while
a job for it is incomplete (a slow action or an overlapping scan never enqueues it twice)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from jobrunner.core import worker as _worker
from jobrunner.core.job import Job
from jobrunner.core.new_job import NewJob
from jobrunner.engine.executor import CURRENT_CLIENT
from jobrunner.triggers.base import Adapter, json_pk

log = structlog.get_logger("jobrunner.triggers")


class Scanned(Protocol):
    """What a scan needs of a trigger."""

    name: str
    target: Any
    queue: str
    priority: int
    max_attempts: int
    adapter: Adapter
    page_size: int

    def new(self, args: Any = None) -> NewJob: ...


class Inserter(Protocol):
    """A client (async) that inserts many jobs in one statement."""

    @property
    def dsn(self) -> str: ...

    async def insert_all(self, jobs: Any, *, conn: Any = None) -> list[Job]: ...


@dataclass(frozen=True, slots=True)
class ScanResult:
    """One scan: records matching `where`, jobs inserted (the others had an incomplete job),
    pages read and seconds taken."""

    trigger: str
    matched: int
    inserted: int
    pages: int
    seconds: float


async def scan(client: Inserter, trigger: Scanned) -> ScanResult:
    """Enqueue one job of `trigger` per record matching its `where`, page by page.

    Example:
        >>> await scan(client, process_order)
        ScanResult(trigger='orders.process', matched=200, inserted=200, pages=1, ...)
    """
    started = time.monotonic()
    adapter, size = trigger.adapter, trigger.page_size
    after: Any = None
    matched = inserted = pages = 0
    while True:
        keys = await adapter.scan(after, size, dsn=lambda: client.dsn)
        if not keys:
            break
        pages += 1
        jobs = await client.insert_all(
            [trigger.new({"pk": json_pk(key, adapter.label)}) for key in keys]
        )
        matched += len(keys)
        inserted += sum(1 for job in jobs if not job.conflict)
        if len(keys) < size:
            break
        after = keys[-1]
    result = ScanResult(trigger.name, matched, inserted, pages, time.monotonic() - started)
    log.info(
        "trigger.scanned",
        trigger=trigger.name,
        matched=matched,
        inserted=inserted,
        pages=pages,
        duration_s=round(result.seconds, 3),
    )
    return result


def scan_worker(trigger: Scanned) -> _worker.Worker:
    """The worker the trigger's crontab entry inserts once per slot: it runs one scan."""

    async def perform(job: Job) -> None:
        client: Any = CURRENT_CLIENT.get()  # the Client running this job
        await scan(client, trigger)

    return _worker.Worker(
        name=f"{trigger.name}:scan",
        target=trigger.target,
        perform=perform,
        backoff=None,
        timeout_fn=None,
        queue=trigger.queue,
        max_attempts=trigger.max_attempts,
        priority=trigger.priority,
        tags=(),
        timeout=None,
        unique=None,
    )
