"""Statements of drain and the testing helpers: run-now claims, enqueued jobs, test databases."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from jobrunner.core.job import Job
from jobrunner.db.queries.jobs import Conn, _fetch, _sql

DRAIN_JOBS = _sql("drain_jobs")
MAX_JOB_ID = _sql("max_job_id")
ENQUEUED_JOBS = _sql("enqueued_jobs")
RESET_TABLES = _sql("reset_tables")
SET_LOCK_TIMEOUT = _sql("set_lock_timeout")
LOCK_HOLDERS = _sql("lock_holders")


async def drain_jobs(
    conn: Conn,
    *,
    queues: Sequence[str] | None,
    demand: int,
    node: str,
    all_scheduled: bool,
    until: datetime | None,
    max_id: int | None,
    skip: Sequence[int],
) -> list[Job]:
    """Claim up to `demand` waiting jobs of `queues` (None: all) for `node`, best first.

    Available jobs always qualify; scheduled and retryable ones when `all_scheduled`, or once
    due by `until` (None: now). Jobs above `max_id` or in `skip` are left.
    """
    rows = await _fetch(
        conn,
        DRAIN_JOBS,
        None if queues is None else list(queues),
        demand,
        node,
        all_scheduled,
        until,
        max_id,
        list(skip),
    )
    jobs = [Job.from_record(row) for row in rows]
    jobs.sort(key=lambda j: (j.priority, j.scheduled_at, j.id))
    return jobs


async def max_job_id(conn: Conn) -> int:
    """The newest job's id, 0 when there is none."""
    rows = await _fetch(conn, MAX_JOB_ID)
    return int(rows[0]["max_id"])


async def enqueued_jobs(
    conn: Conn,
    *,
    states: Sequence[str],
    worker: str | None = None,
    queue: str | None = None,
    limit: int | None = None,
) -> list[Job]:
    """Jobs in `states` (of `worker` and `queue` when given), oldest first."""
    rows = await _fetch(conn, ENQUEUED_JOBS, list(states), worker, queue, limit)
    return [Job.from_record(row) for row in rows]


async def reset_tables(conn: Conn) -> None:
    """Empty every jobrunner table but the migrations record (test isolation)."""
    await _fetch(conn, RESET_TABLES)


CREATE_DATABASE = _sql("create_database")
DROP_DATABASE = _sql("drop_database")


async def create_database(conn: Conn, name: str) -> None:
    """Create the empty database `name` (the pytest plugin's per-session database)."""
    rows = await _fetch(conn, CREATE_DATABASE, name)
    await conn.execute(rows[0]["statement"])


async def drop_database(conn: Conn, name: str) -> None:
    """Drop the database `name` if it exists, closing its connections."""
    rows = await _fetch(conn, DROP_DATABASE, name)
    await conn.execute(rows[0]["statement"])


async def set_lock_timeout(conn: Conn, limit: str) -> None:
    """Bound how long the current transaction's statements wait for a lock ('5s')."""
    await _fetch(conn, SET_LOCK_TIMEOUT, limit)


async def lock_holders(conn: Conn) -> list[dict[str, Any]]:
    """The other sessions holding a lock on a jobrunner table: pid, state, since, query."""
    return [dict(row) for row in await _fetch(conn, LOCK_HOLDERS)]
