"""Statements of the time-based loops: staging, leadership, cron, pruning, rescue."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from jobrunner.core.job import Job
from jobrunner.core.new_job import NewJob
from jobrunner.db.queries.jobs import Conn, _fetch, _sql

STAGE_JOBS = _sql("stage_jobs")
ELECT_LEADER = _sql("elect_leader")
RESIGN_LEADER = _sql("resign_leader")
DATABASE_NOW = _sql("database_now")
CRON_PROGRESS = _sql("cron_progress")
INSERT_CRON_JOBS = _sql("insert_cron_jobs")
PRUNE_JOBS = _sql("prune_jobs")
PRUNE_WORKFLOWS = _sql("prune_workflows")
PRUNE_BATCHES = _sql("prune_batches")
RESCUE_JOBS = _sql("rescue_jobs")
REMOVE_EXPIRED_NODES = _sql("remove_expired_nodes")


async def stage_jobs(conn: Conn, *, limit: int) -> dict[str, int]:
    """Make up to `limit` due scheduled/retryable jobs available; queue -> how many."""
    rows = await _fetch(conn, STAGE_JOBS, limit)
    return {row["queue"]: row["staged"] for row in rows}


async def elect_leader(conn: Conn, *, name: str, node: str, lease_s: float) -> bool:
    """Take or renew the `name` lease for `node`; True while `node` holds it."""
    return bool(await _fetch(conn, ELECT_LEADER, name, node, lease_s))


async def resign_leader(conn: Conn, *, name: str, node: str) -> bool:
    """Give the `name` lease up if `node` holds it; True if it did."""
    return bool(await _fetch(conn, RESIGN_LEADER, name, node))


async def database_now(conn: Conn) -> datetime:
    """The database's clock."""
    rows = await _fetch(conn, DATABASE_NOW)
    now: datetime = rows[0]["now"]
    return now


async def cron_progress(conn: Conn, names: Sequence[str]) -> dict[str, datetime]:
    """The last slot inserted for each of these cron entries that has one."""
    rows = await _fetch(conn, CRON_PROGRESS, list(names))
    return {row["name"]: row["last_slot"] for row in rows}


@dataclass(frozen=True, slots=True)
class CronJob:
    """One cron job to insert: the job and the key that makes its slot unique."""

    job: NewJob
    unique_key: str


async def insert_cron_jobs(
    conn: Conn,
    jobs: Sequence[CronJob],
    progress: Mapping[str, datetime],
    *,
    present: datetime | None = None,
) -> list[Job]:
    """Insert `jobs` (a slot already inserted is skipped) and move entries' progress forward.

    A stored slot later than `present` (default: the database's now) is replaced even by an
    earlier one: the clock stepped back. Returns the jobs actually inserted.
    """
    new = [c.job for c in jobs]
    rows = await _fetch(
        conn,
        INSERT_CRON_JOBS,
        [j.worker for j in new],
        [j.queue for j in new],
        [j.encoded_args() for j in new],
        [j.encoded_meta() for j in new],
        [json.dumps(list(j.tags)) for j in new],
        [j.priority for j in new],
        [j.max_attempts for j in new],
        [c.unique_key for c in jobs],
        list(progress),
        list(progress.values()),
        present,
    )
    return [Job.from_record(row) for row in rows]


async def prune_jobs(
    conn: Conn, *, completed_s: float, cancelled_s: float, discarded_s: float, limit: int
) -> dict[str, int]:
    """Delete one batch of finished jobs older than their state's age; state -> how many."""
    rows = await _fetch(conn, PRUNE_JOBS, completed_s, cancelled_s, discarded_s, limit)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return counts


async def prune_workflows(conn: Conn, *, min_age_s: float, limit: int) -> int:
    """Delete up to `limit` workflow rows none of whose steps is left, older than
    `min_age_s`; how many went."""
    rows = await _fetch(conn, PRUNE_WORKFLOWS, min_age_s, limit)
    return int(rows[0]["n"])


async def prune_batches(conn: Conn, *, min_age_s: float, limit: int) -> int:
    """Delete up to `limit` batch rows none of whose jobs is left, older than `min_age_s`;
    how many went."""
    rows = await _fetch(conn, PRUNE_BATCHES, min_age_s, limit)
    return int(rows[0]["n"])


async def rescue_jobs(conn: Conn, *, node_lease_s: float) -> list[Job]:
    """Put jobs left executing by dead nodes back to available (or discard them)."""
    rows = await _fetch(conn, RESCUE_JOBS, node_lease_s)
    return [Job.from_record(row) for row in rows]


async def remove_expired_nodes(conn: Conn) -> list[str]:
    """Delete the rows of nodes whose lease expired; their names."""
    rows = await _fetch(conn, REMOVE_EXPIRED_NODES)
    return [row["name"] for row in rows]
