"""Statements of jobs: look up, cancel, retry, fetch and ack; and what every queries module
shares (loading sql/*.sql, running a statement, decoding claimed rows). Inserts are in
`insert`, nodes in `nodes`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib.resources import files
from typing import Any, Protocol

import asyncpg

from jobrunner.core.errors import InvalidJob, SchemaMissing
from jobrunner.core.job import Job, JobError
from jobrunner.db import connection as _db


def _sql(name: str) -> str:
    return (files("jobrunner.db") / "sql" / f"{name}.sql").read_text()


GET_JOB = _sql("get_job")
FETCH_JOBS = _sql("fetch_jobs")
CLAIMED_JOBS = _sql("claimed_jobs")
CLAIM_JOBS = _sql("claim_jobs")
ACK_AND_FETCH_JOBS = _sql("ack_and_fetch_jobs")
CANCEL_JOB = _sql("cancel_job")
RETRY_JOB = _sql("retry_job")
DATABASE_IDENTITY = _sql("database_identity")


class Conn(Protocol):
    """An asyncpg connection, pool or pooled connection (asyncpg's own signatures)."""

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Any]: ...  # noqa: ASYNC109
    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Any: ...  # noqa: ASYNC109
    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str: ...  # noqa: ASYNC109


async def _fetch(conn: Conn, query: str, *args: Any) -> list[Any]:
    try:
        return await _db.fetch(conn, query, *args)
    except (asyncpg.UndefinedTableError, asyncpg.UndefinedObjectError) as exc:
        raise SchemaMissing() from exc
    except (asyncpg.CheckViolationError, asyncpg.DataError) as exc:
        raise InvalidJob(f"the database refused the job: {exc}") from exc


def identity_of(row: Any) -> tuple[Any, ...]:
    """What tells one database from another, from a row of DATABASE_IDENTITY."""
    return (row["name"], row["port"], row["started"])


async def database_identity(conn: Conn) -> tuple[Any, ...]:
    """This database's name, its server's port and start time: a caller's connection must
    reach the client's database."""
    return identity_of((await _fetch(conn, DATABASE_IDENTITY))[0])


async def get_job(conn: Conn, job_id: int) -> Job | None:
    rows = await _fetch(conn, GET_JOB, job_id)
    return readable(rows[0]) if rows else None


async def cancel_job(conn: Conn, job_id: int) -> Job | None:
    """Cancel a job that has not finished; None if it had (or does not exist)."""
    rows = await _fetch(conn, CANCEL_JOB, job_id)
    return Job.from_record(rows[0]) if rows else None


async def retry_job(conn: Conn, job_id: int) -> Job | None:
    """Make a job that is not executing available now; None if it is executing or missing."""
    rows = await _fetch(conn, RETRY_JOB, job_id)
    return Job.from_record(rows[0]) if rows else None


Unreadable = tuple[int, int, str | None, Exception]
"""A claimed row that cannot be decoded: its id, its attempt, its claim, and why."""


def refused(exc: BaseException) -> bool:
    """True when the database refused a statement's values: sent again, they fail again."""
    return isinstance(
        exc,
        InvalidJob
        | asyncpg.DataError
        | asyncpg.IntegrityConstraintViolationError
        | asyncpg.ProgramLimitExceededError,
    )


def _claimed(rows: Sequence[Any], unreadable: list[Unreadable] | None) -> list[Job]:
    """Claimed rows decoded one by one, best first; a row that cannot be decoded goes to
    `unreadable` (without it, its error propagates)."""
    jobs = []
    for row in rows:
        try:
            jobs.append(Job.from_record(row))
        except Exception as exc:
            if unreadable is None:
                raise
            claimed_by = row["attempted_by"] or []
            claim = claimed_by[1] if len(claimed_by) > 1 else None
            unreadable.append((row["id"], row["attempt"], claim, exc))
    jobs.sort(key=lambda j: (j.priority, j.scheduled_at, j.id))
    return jobs


def readable(row: Any) -> Job:
    """A stored job for display, even one whose args, meta or errors cannot be decoded:
    those show as what could not be read."""
    try:
        return Job.from_record(row)
    except Exception as exc:
        problem = f"{type(exc).__name__}: {str(exc)[:200]}"
    fields = dict(row)
    unreadable = {"jobrunner_unreadable": problem}
    for name, empty in (("args", "{}"), ("meta", "{}"), ("errors", "[]")):
        try:
            Job.from_record({**fields, "args": "{}", "meta": "{}", "errors": "[]", name: row[name]})
        except Exception:
            fields[name] = empty if name == "errors" else json.dumps(unreadable)
    job = Job.from_record(fields)
    if fields["errors"] == "[]" and row["errors"] != "[]":
        note = JobError(attempt=job.attempt, at="", error=f"errors unreadable: {problem}")
        job = replace(job, errors=(note,))
    return job


async def fetch_jobs(
    conn: Conn,
    *,
    queue: str,
    demand: int,
    node: str,
    claim: str | None = None,
    started: int | None = None,
    unreadable: list[Unreadable] | None = None,
) -> list[Job]:
    """Claim up to `demand` available jobs of `queue` for `node`, best first.

    `claim` names this fetch, so that `claimed_jobs` finds what it took if its reply is lost.
    The first `started` start now (None: all); the others are flagged as claimed ahead.
    Rows that cannot be decoded go to `unreadable` when given.
    """
    rows = await _fetch(conn, FETCH_JOBS, queue, demand, node, claim, started)
    return _claimed(rows, unreadable)


async def claimed_jobs(
    conn: Conn, *, node: str, claims: Sequence[str], unreadable: list[Unreadable] | None = None
) -> list[Job]:
    """The jobs that these fetches of `node` claimed and it still holds, best first."""
    rows = await _fetch(conn, CLAIMED_JOBS, node, list(claims))
    return _claimed(rows, unreadable)


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
    final: bool = False  # the job's last attempt: a failure now discards it
    claim: str | None = None  # the run's claim id (attempted_by[1]); None: claimed without one
    result: str | None = None  # JSON text recorded with a completed job (`Record`)


async def ack_jobs(conn: Conn, node: str, acks: Sequence[Ack]) -> set[int]:
    """Write `acks` in one statement (claiming nothing); return the ids this node still owned."""
    owned, _ = await ack_and_fetch_jobs(conn, node, acks, queue="", demand=0)
    return owned


def ack_columns(acks: Sequence[Ack]) -> tuple[list[Any], ...]:
    """The acks' leading statement parameters, one array per field (job ids, attempts,
    states, delays, errors, attempts to give back), as every ack-and-claim statement takes
    them."""
    return (
        [a.job_id for a in acks],
        [a.attempt for a in acks],
        [a.state for a in acks],
        [a.delay_s for a in acks],
        [a.error for a in acks],
        [a.undo_attempt for a in acks],
    )


async def ack_and_fetch_jobs(
    conn: Conn,
    node: str,
    acks: Sequence[Ack],
    *,
    queue: str,
    demand: int,
    claim: str | None = None,
    started: int | None = None,
    unreadable: list[Unreadable] | None = None,
) -> tuple[set[int], list[Job]]:
    """Write `acks` and claim up to `demand` jobs of `queue`, in one statement; the first
    `started` start now (None: all), the others are flagged as claimed ahead.

    Returns the acked ids this node still owned and the claimed jobs, best first; claimed
    rows that cannot be decoded go to `unreadable` when given.
    """
    rows = await _fetch(
        conn,
        ACK_AND_FETCH_JOBS,
        node,
        *ack_columns(acks),
        queue,
        demand,
        claim,
        [a.claim for a in acks],
        [a.result for a in acks],
        started,
    )
    owned = {row["id"] for row in rows if row["acked"]}
    return owned, _claimed([row for row in rows if not row["acked"]], unreadable)
