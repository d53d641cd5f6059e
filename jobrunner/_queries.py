"""The only module that runs jobrunner's SQL: statements live in sql/*.sql."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from importlib.resources import files
from typing import Any, Protocol

import asyncpg

from . import _db
from .errors import InvalidJob, JobRunnerError, SchemaMissing
from .job import Job
from .worker import NewJob


def _sql(name: str) -> str:
    return (files("jobrunner") / "sql" / f"{name}.sql").read_text()


INSERT_JOBS = _sql("insert_jobs")
FIND_UNIQUE_JOBS = _sql("find_unique_jobs")
GET_JOB = _sql("get_job")
FETCH_JOBS = _sql("fetch_jobs")
CLAIMED_JOBS = _sql("claimed_jobs")
CLAIM_JOBS = _sql("claim_jobs")
ACK_JOBS = _sql("ack_jobs")
CANCEL_JOB = _sql("cancel_job")
RETRY_JOB = _sql("retry_job")
REGISTER_NODE = _sql("register_node")
HEARTBEAT_NODE = _sql("heartbeat_node")
REMOVE_NODE = _sql("remove_node")
OWNED_JOBS = _sql("owned_jobs")


class Conn(Protocol):
    """An asyncpg connection, pool or pooled connection."""

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Any]: ...
    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Any: ...
    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str: ...


async def _fetch(conn: Conn, query: str, *args: Any) -> list[Any]:
    try:
        return await _db.fetch(conn, query, *args)
    except (asyncpg.UndefinedTableError, asyncpg.UndefinedObjectError) as exc:
        raise SchemaMissing() from exc
    except (asyncpg.CheckViolationError, asyncpg.DataError) as exc:
        raise InvalidJob(f"the database refused the job: {exc}") from exc


def unique_key(job: NewJob) -> str | None:
    """The key a unique job holds in the unique index: a digest of its fingerprint."""
    fingerprint = job.fingerprint()
    if fingerprint is None:
        return None
    return "u:" + hashlib.sha256(fingerprint.encode()).hexdigest()


_INSERT_ROUNDS = 5


async def insert_jobs(conn: Conn, jobs: Sequence[NewJob]) -> list[Job]:
    """Insert `jobs` in one statement; a unique conflict returns the existing job.

    The result is in the order of `jobs`, conflicts marked `conflict=True`. A conflicting
    job that left its unique states before it could be looked up no longer blocks: those
    jobs are inserted again.
    """
    keys = [unique_key(job) for job in jobs]
    results: dict[int, Job] = {}
    todo = list(range(len(jobs)))
    for _ in range(_INSERT_ROUNDS):
        conflicts = await _insert_round(conn, jobs, keys, todo, results)
        if conflicts:
            found = await find_unique_jobs(conn, list(set(conflicts.values())))
            for index, key in conflicts.items():
                if key in found:
                    results[index] = replace(found[key], conflict=True)
        todo = [i for i in todo if i not in results]
        if not todo:
            return [results[i] for i in range(len(jobs))]
    raise JobRunnerError(
        "unique jobs kept conflicting with jobs that were released at once; insert them again"
    )


async def _insert_round(conn: Conn, jobs: Sequence[NewJob], keys: Sequence[str | None],
                        todo: Sequence[int], results: dict[int, Job]) -> dict[int, str]:
    """Insert the jobs at `todo` into `results`; return the conflicting ones' keys."""
    rows = await _insert_statement(conn, _columns([jobs[i] for i in todo], [keys[i] for i in todo]))
    conflicts: dict[int, str] = {}
    by_key: dict[str, Job] = {}
    for row in rows:
        index = todo[row["ord"] - 1]
        if row["id"] is None:
            conflicts[index] = row["held_key"]
            continue
        job = Job.from_record(row)
        results[index] = job
        if job.unique_key is not None:
            by_key[job.unique_key] = job
    for index, key in list(conflicts.items()):
        if key in by_key:  # a duplicate within the batch
            results[index] = replace(by_key[key], conflict=True)
            del conflicts[index]
    return conflicts


async def _insert_statement(conn: Conn, columns: tuple[list[Any], ...]) -> list[Any]:
    """Run INSERT_JOBS; a deadlock between concurrent inserts is retried outside transactions."""
    for attempt in range(3):
        try:
            return await _fetch(conn, INSERT_JOBS, *columns)
        except asyncpg.DeadlockDetectedError:
            in_transaction = getattr(conn, "is_in_transaction", None)
            if attempt == 2 or (in_transaction is not None and in_transaction()):
                raise
    raise AssertionError("unreachable")


async def find_unique_jobs(conn: Conn, keys: Sequence[str]) -> dict[str, Job]:
    """The jobs holding these unique keys now, by key."""
    rows = await _fetch(conn, FIND_UNIQUE_JOBS, list(keys))
    return {row["unique_key"]: Job.from_record(row) for row in rows}


def _columns(jobs: Sequence[NewJob], keys: Sequence[str | None]) -> tuple[list[Any], ...]:
    return (
        [j.worker for j in jobs],
        [j.queue for j in jobs],
        [j.encoded_args() for j in jobs],
        [j.encoded_meta() for j in jobs],
        [json.dumps(list(j.tags)) for j in jobs],
        [j.priority for j in jobs],
        [j.max_attempts for j in jobs],
        [j.scheduled_at for j in jobs],
        [j.schedule_in for j in jobs],
        list(keys),
        ["{" + ",".join(j.unique.states) + "}" if j.unique else None for j in jobs],
        [j.unique.period if j.unique else None for j in jobs],
    )


async def get_job(conn: Conn, job_id: int) -> Job | None:
    rows = await _fetch(conn, GET_JOB, job_id)
    return Job.from_record(rows[0]) if rows else None


async def cancel_job(conn: Conn, job_id: int) -> Job | None:
    """Cancel a job that has not finished; None if it had (or does not exist)."""
    rows = await _fetch(conn, CANCEL_JOB, job_id)
    return Job.from_record(rows[0]) if rows else None


async def retry_job(conn: Conn, job_id: int) -> Job | None:
    """Make a job that is not executing available now; None if it is executing or missing."""
    rows = await _fetch(conn, RETRY_JOB, job_id)
    return Job.from_record(rows[0]) if rows else None


async def fetch_jobs(conn: Conn, *, queue: str, demand: int, node: str,
                     claim: str | None = None) -> list[Job]:
    """Claim up to `demand` available jobs of `queue` for `node`, best first.

    `claim` names this fetch, so that `claimed_jobs` finds what it took if its reply is lost.
    """
    rows = await _fetch(conn, FETCH_JOBS, queue, demand, node, claim)
    jobs = [Job.from_record(row) for row in rows]
    jobs.sort(key=lambda j: (j.priority, j.scheduled_at, j.id))
    return jobs


async def claimed_jobs(conn: Conn, *, node: str, claims: Sequence[str]) -> list[Job]:
    """The jobs that these fetches of `node` claimed and it still holds, best first."""
    rows = await _fetch(conn, CLAIMED_JOBS, node, list(claims))
    jobs = [Job.from_record(row) for row in rows]
    jobs.sort(key=lambda j: (j.priority, j.scheduled_at, j.id))
    return jobs


async def claim_jobs(conn: Conn, *, ids: Sequence[int], node: str) -> list[Job]:
    """Claim these waiting jobs (whatever their scheduled time) for `node`, best first."""
    rows = await _fetch(conn, CLAIM_JOBS, list(ids), node)
    jobs = [Job.from_record(row) for row in rows]
    jobs.sort(key=lambda j: (j.priority, j.scheduled_at, j.id))
    return jobs


@dataclass(frozen=True, slots=True)
class Ack:
    """The outcome of one attempt, to be written back."""

    job_id: int
    attempt: int
    state: str
    delay_s: float | None = None
    error: str | None = None  # a JSON object
    undo_attempt: bool = False


async def ack_jobs(conn: Conn, node: str, acks: Sequence[Ack]) -> set[int]:
    """Write `acks` in one statement; return the ids this node still owned."""
    rows = await _fetch(
        conn, ACK_JOBS, node,
        [a.job_id for a in acks], [a.attempt for a in acks], [a.state for a in acks],
        [a.delay_s for a in acks], [a.error for a in acks], [a.undo_attempt for a in acks],
    )
    return {row["id"] for row in rows}


async def register_node(conn: Conn, *, name: str, host: str, pid: int, queues: str,
                        lease_s: float) -> None:
    await _fetch(conn, REGISTER_NODE, name, host, pid, queues, lease_s)


async def heartbeat_node(conn: Conn, *, name: str, queues: str, lease_s: float) -> bool:
    """Refresh the node's lease; False if its row is gone."""
    return bool(await _fetch(conn, HEARTBEAT_NODE, name, queues, lease_s))


async def remove_node(conn: Conn, name: str) -> None:
    await _fetch(conn, REMOVE_NODE, name)


async def owned_jobs(conn: Conn, *, ids: Sequence[int], node: str) -> set[int]:
    """The ids among `ids` that `node` still runs (executing, attempted by it)."""
    return {row["id"] for row in await _fetch(conn, OWNED_JOBS, list(ids), node)}

# --- scheduler: staging, leadership, cron, pruning, rescue -------------------------------

STAGE_JOBS = _sql("stage_jobs")
ELECT_LEADER = _sql("elect_leader")
RESIGN_LEADER = _sql("resign_leader")
DATABASE_NOW = _sql("database_now")
CRON_PROGRESS = _sql("cron_progress")
INSERT_CRON_JOBS = _sql("insert_cron_jobs")
PRUNE_JOBS = _sql("prune_jobs")
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


async def insert_cron_jobs(conn: Conn, jobs: Sequence[CronJob],
                           progress: Mapping[str, datetime]) -> list[Job]:
    """Insert `jobs` (a slot already inserted is skipped) and move entries' progress forward.

    Returns the jobs actually inserted.
    """
    new = [c.job for c in jobs]
    rows = await _fetch(
        conn, INSERT_CRON_JOBS,
        [j.worker for j in new], [j.queue for j in new],
        [j.encoded_args() for j in new], [j.encoded_meta() for j in new],
        [json.dumps(list(j.tags)) for j in new], [j.priority for j in new],
        [j.max_attempts for j in new], [c.unique_key for c in jobs],
        list(progress), list(progress.values()),
    )
    return [Job.from_record(row) for row in rows]


async def prune_jobs(conn: Conn, *, completed_s: float, cancelled_s: float, discarded_s: float,
                     limit: int) -> dict[str, int]:
    """Delete one batch of finished jobs older than their state's age; state -> how many."""
    rows = await _fetch(conn, PRUNE_JOBS, completed_s, cancelled_s, discarded_s, limit)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return counts


async def rescue_jobs(conn: Conn, *, node_lease_s: float) -> list[Job]:
    """Put jobs left executing by dead nodes back to available (or discard them)."""
    rows = await _fetch(conn, RESCUE_JOBS, node_lease_s)
    return [Job.from_record(row) for row in rows]


async def remove_expired_nodes(conn: Conn) -> list[str]:
    """Delete the rows of nodes whose lease expired; their names."""
    rows = await _fetch(conn, REMOVE_EXPIRED_NODES)
    return [row["name"] for row in rows]


# --- drain and testing helpers -------------------------------------------------------------

DRAIN_JOBS = _sql("drain_jobs")
MAX_JOB_ID = _sql("max_job_id")
ENQUEUED_JOBS = _sql("enqueued_jobs")
RESET_TABLES = _sql("reset_tables")


async def drain_jobs(conn: Conn, *, queues: Sequence[str] | None, demand: int, node: str,
                     all_scheduled: bool, until: datetime | None, max_id: int | None,
                     skip: Sequence[int]) -> list[Job]:
    """Claim up to `demand` waiting jobs of `queues` (None: all) for `node`, best first.

    Available jobs always qualify; scheduled and retryable ones when `all_scheduled`, or once
    due by `until` (None: now). Jobs above `max_id` or in `skip` are left.
    """
    rows = await _fetch(conn, DRAIN_JOBS, None if queues is None else list(queues), demand, node,
                        all_scheduled, until, max_id, list(skip))
    jobs = [Job.from_record(row) for row in rows]
    jobs.sort(key=lambda j: (j.priority, j.scheduled_at, j.id))
    return jobs


async def max_job_id(conn: Conn) -> int:
    """The newest job's id, 0 when there is none."""
    rows = await _fetch(conn, MAX_JOB_ID)
    return int(rows[0]["max_id"])


async def enqueued_jobs(conn: Conn, *, states: Sequence[str], worker: str | None = None,
                        queue: str | None = None, limit: int | None = None) -> list[Job]:
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
