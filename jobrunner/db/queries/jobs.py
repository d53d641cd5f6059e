"""Statements of jobs and nodes: insert (unique or plain), look up, cancel, retry, fetch and ack;
node registration and heartbeat. Statements live in sql/*.sql."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from importlib.resources import files
from typing import Any, Protocol

import asyncpg

from jobrunner.core.errors import InvalidJob, JobRunnerError, SchemaMissing
from jobrunner.core.job import _STATES, Job, JobError, inserted, new_inserted_job
from jobrunner.core.new_job import NewJob
from jobrunner.db import connection as _db


def _sql(name: str) -> str:
    return (files("jobrunner.db") / "sql" / f"{name}.sql").read_text()


INSERT_JOBS = _sql("insert_jobs")
INSERT_PLAIN_JOB = _sql("insert_plain_job")
INSERT_PLAIN_JOBS = _sql("insert_plain_jobs")
FIND_UNIQUE_JOBS = _sql("find_unique_jobs")
RELEASE_UNIQUE_KEYS = _sql("release_unique_keys")
GET_JOB = _sql("get_job")
FETCH_JOBS = _sql("fetch_jobs")
CLAIMED_JOBS = _sql("claimed_jobs")
CLAIM_JOBS = _sql("claim_jobs")
ACK_AND_FETCH_JOBS = _sql("ack_and_fetch_jobs")
CANCEL_JOB = _sql("cancel_job")
RETRY_JOB = _sql("retry_job")
REGISTER_NODE = _sql("register_node")
HEARTBEAT_NODE = _sql("heartbeat_node")
REMOVE_NODE = _sql("remove_node")
RESCUE_NODE_JOBS = _sql("rescue_node_jobs")
OWNED_JOBS = _sql("owned_jobs")
DATABASE_IDENTITY = _sql("database_identity")
LOCK_NODE_NAME = _sql("lock_node_name")
CANCELLED_JOBS = _sql("cancelled_jobs")


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


def unique_key(job: NewJob) -> str | None:
    """The key a unique job holds in the unique index: a digest of its fingerprint."""
    fingerprint = job.fingerprint()
    if fingerprint is None:
        return None
    return "u:" + hashlib.sha256(fingerprint.encode()).hexdigest()


_INSERT_ROUNDS = 5


async def insert_jobs(
    conn: Conn, jobs: Sequence[NewJob], *, release_on: Conn | None = None
) -> list[Job]:
    """Insert `jobs` in one statement; a unique conflict returns the existing job.

    The result is in the order of `jobs`, conflicts marked `conflict=True`. A conflicting
    job that left its unique states before it could be looked up no longer blocks: those
    jobs are inserted again. With `release_on` (when `conn` is the caller's transaction),
    the unique keys the insert replaces are released there first, in a statement that
    commits at once, so that the caller's transaction never holds an executing job's row.
    """
    if all(job.unique is None for job in jobs):
        if len(jobs) == 1:
            return [await insert_plain_job(conn, jobs[0])]
        return await insert_plain_jobs(conn, jobs)
    plan = unique_insert_plan(jobs, release_apart=release_on is not None)
    query, args = next(plan)
    while True:
        if query is INSERT_JOBS:
            rows = await _insert_statement(conn, args)
        else:
            rows = await _fetch(
                release_on or conn if query is RELEASE_UNIQUE_KEYS else conn, query, *args
            )
        try:
            query, args = plan.send(rows)
        except StopIteration as done:
            result: list[Job] = done.value
            return result


# What a unique insert asks the database (statement, parameters) and is given back (rows):
# the same plan runs on an async connection (insert_jobs) and a sync one (queries.sync).
InsertPlan = Generator[tuple[str, tuple[Any, ...]], list[Any], list[Job]]


def unique_insert_plan(jobs: Sequence[NewJob], *, release_apart: bool = False) -> InsertPlan:
    """The rounds of a batch with unique jobs: insert, look up the conflicts, insert again the
    ones whose conflicting job was released meanwhile.

    With `release_apart` (the insert runs in the caller's transaction), each round first asks
    for RELEASE_UNIQUE_KEYS, which the driver runs on a connection of its own that commits at
    once: released in the caller's transaction, an executing job's row would stay locked until
    that transaction ends, and the job's outcome would wait for it."""
    keys = [unique_key(job) for job in jobs]
    results: dict[int, Job] = {}
    todo = list(range(len(jobs)))
    for _ in range(_INSERT_ROUNDS):
        columns = _columns([jobs[i] for i in todo], [keys[i] for i in todo])
        if release_apart:
            yield RELEASE_UNIQUE_KEYS, columns[-3:]
        rows = yield INSERT_JOBS, (*columns, not release_apart)
        conflicts = _round_results(rows, todo, results)
        if conflicts:
            rows = yield FIND_UNIQUE_JOBS, (list(set(conflicts.values())),)
            found = {row["unique_key"]: Job.from_record(row) for row in rows}
            for index, key in conflicts.items():
                if key in found:
                    results[index] = replace(found[key], conflict=True)
        todo = [i for i in todo if i not in results]
        if not todo:
            return [results[i] for i in range(len(jobs))]
    raise JobRunnerError(
        "unique jobs kept conflicting with jobs that were released at once; insert them again"
    )


async def release_unique_keys(
    conn: Conn, jobs: Sequence[NewJob], keys: Sequence[str | None]
) -> None:
    """Release, in a statement of its own, the unique keys that inserting `jobs` would (the
    step `unique_insert_plan` asks for with `release_apart`)."""
    await _fetch(conn, RELEASE_UNIQUE_KEYS, *_columns(jobs, keys)[-3:])


def _round_results(rows: list[Any], todo: Sequence[int], results: dict[int, Job]) -> dict[int, str]:
    """Put the jobs a round inserted into `results`; return the conflicting ones' keys."""
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


async def _insert_statement(conn: Conn, columns: tuple[Any, ...]) -> list[Any]:
    """Run INSERT_JOBS; a deadlock between concurrent inserts is retried outside transactions."""
    for attempt in range(3):
        try:
            return await _fetch(conn, INSERT_JOBS, *columns)
        except asyncpg.DeadlockDetectedError:
            in_transaction = getattr(conn, "is_in_transaction", None)
            if attempt == 2 or (in_transaction is not None and in_transaction()):
                raise
    raise AssertionError("unreachable")


def plain_job_params(job: NewJob) -> tuple[tuple[Any, ...], str, str]:
    """INSERT_PLAIN_JOB's parameters for `job`, and its encoded args and meta."""
    args, meta = job.encoded_args(), job.encoded_meta()
    params = (
        job.worker,
        job.queue,
        args,
        meta,
        list(job.tags),
        job.priority,
        job.max_attempts,
        job.scheduled_at,
        job.schedule_in,
    )
    return params, args, meta


def plain_job_result(job: NewJob, args: str, meta: str, row: Any) -> Job:
    """The job INSERT_PLAIN_JOB inserted, from its one row."""
    job_id, state, inserted_at, scheduled_at = row[:4]
    return inserted(_new_job(job, args, meta), job_id, _STATES[state], inserted_at, scheduled_at)


async def insert_plain_job(conn: Conn, job: NewJob) -> Job:
    """Insert one job that is not unique."""
    params, args, meta = plain_job_params(job)
    rows = await _fetch(conn, INSERT_PLAIN_JOB, *params)
    return plain_job_result(job, args, meta, rows[0])


def plain_jobs_params(jobs: Sequence[NewJob]) -> tuple[tuple[Any, ...], list[str], list[str]]:
    """INSERT_PLAIN_JOBS's parameters for `jobs`, and their encoded args and metas (one per
    job). A column whose jobs all share one value is sent as that value alone."""
    args = [j.encoded_args() for j in jobs]
    metas = _one_or_all([j.encoded_meta() for j in jobs])
    params = (
        _one_or_all([j.worker for j in jobs]),
        _one_or_all([j.queue for j in jobs]),
        args,
        metas,
        _one_or_all([_tags_json(j) for j in jobs]),
        _one_or_all([j.priority for j in jobs]),
        _one_or_all([j.max_attempts for j in jobs]),
        _all_or_none([j.scheduled_at for j in jobs]),
        _all_or_none([j.schedule_in for j in jobs]),
    )
    return params, args, metas * len(jobs) if len(metas) == 1 else metas


def plain_jobs_result(built: Sequence[Job], row: Any) -> list[Job]:
    """The jobs INSERT_PLAIN_JOBS inserted: `built` (see _new_job) with what its one row says."""
    ids, states, scheduled_ats, inserted_at = row
    if ids != sorted(ids):  # the arrays are in id order in practice, but need not be
        order = sorted(range(len(ids)), key=ids.__getitem__)
        ids, states = [ids[i] for i in order], [states[i] for i in order]
        scheduled_ats = [scheduled_ats[i] for i in order]
    return [
        inserted(job, job_id, _STATES[state], inserted_at, at if at is not None else inserted_at)
        for job, job_id, state, at in zip(built, ids, states, scheduled_ats, strict=True)
    ]


async def insert_plain_jobs(conn: Conn, jobs: Sequence[NewJob]) -> list[Job]:
    """Insert jobs that are not unique in one statement; the result is in the order of `jobs`.

    The jobs are built while the database inserts them (their ids, states and times are set
    once it has).
    """
    params, args, metas = plain_jobs_params(jobs)
    query = asyncio.ensure_future(_fetch(conn, INSERT_PLAIN_JOBS, *params))
    try:
        built: list[Job] = []
        for start in range(0, len(jobs), _BUILD_CHUNK):
            await asyncio.sleep(0)  # the statement goes out (once prepared, the first time)
            end = start + _BUILD_CHUNK
            built += map(_new_job, jobs[start:end], args[start:end], metas[start:end])
        rows = await query
    except BaseException:
        query.cancel()
        raise
    return plain_jobs_result(built, rows[0])


# Jobs built between two looks at the connection while insert_plain_jobs waits for the database.
_BUILD_CHUNK = 1_000


def _tags_json(job: NewJob) -> str:
    """A job's tags as the JSON array the insert statements take."""
    return json.dumps(list(job.tags)) if job.tags else "[]"


def _one_or_all(values: list[Any]) -> list[Any]:
    """`values`, or its one value if they are all the same (see insert_plain_jobs.sql)."""
    return values[:1] if values.count(values[0]) == len(values) else values


def _all_or_none(values: list[Any]) -> list[Any]:
    """`values`, or none if they are all None (see insert_plain_jobs.sql)."""
    return [] if values.count(None) == len(values) else values


def _new_job(job: NewJob, args: str, meta: str) -> Job:
    """The Job that `get_job` will return for `job`, but for what the database decides; args
    and meta are decoded from the text stored."""
    return new_inserted_job(
        job.queue,
        job.worker,
        _stored_json(args),
        {} if meta == "{}" else _stored_json(meta),
        tuple(job.tags),
        job.max_attempts,
        job.priority,
    )


def _jsonb_float(text: str) -> float | int:
    """The value json.loads gives for the number `text` once stored as jsonb: jsonb keeps a
    number as numeric and writes it in full, so '1e+16' reads back as the integer."""
    mantissa, exponent_mark, exponent = text.lower().partition("e")
    if exponent_mark and int(exponent) >= len(mantissa.partition(".")[2]):
        return int(Decimal(text))
    return float(text)


_STORED_JSON = json.JSONDecoder(parse_float=_jsonb_float)


def _stored_json(text: str) -> Any:
    """json.loads of what jsonb gives back for the JSON `text` (one value, no whitespace)."""
    return _STORED_JSON.raw_decode(text)[0]


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
        [_tags_json(j) for j in jobs],
        [j.priority for j in jobs],
        [j.max_attempts for j in jobs],
        [j.scheduled_at for j in jobs],
        [j.schedule_in for j in jobs],
        list(keys),
        ["{" + ",".join(j.unique.states) + "}" if j.unique else None for j in jobs],
        [j.unique.period if j.unique else None for j in jobs],
    )


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
    unreadable: list[Unreadable] | None = None,
) -> list[Job]:
    """Claim up to `demand` available jobs of `queue` for `node`, best first.

    `claim` names this fetch, so that `claimed_jobs` finds what it took if its reply is lost.
    Rows that cannot be decoded go to `unreadable` when given.
    """
    rows = await _fetch(conn, FETCH_JOBS, queue, demand, node, claim)
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


async def ack_jobs(conn: Conn, node: str, acks: Sequence[Ack]) -> set[int]:
    """Write `acks` in one statement (claiming nothing); return the ids this node still owned."""
    owned, _ = await ack_and_fetch_jobs(conn, node, acks, queue="", demand=0)
    return owned


async def ack_and_fetch_jobs(
    conn: Conn,
    node: str,
    acks: Sequence[Ack],
    *,
    queue: str,
    demand: int,
    claim: str | None = None,
    unreadable: list[Unreadable] | None = None,
) -> tuple[set[int], list[Job]]:
    """Write `acks` and claim up to `demand` jobs of `queue`, in one statement.

    Returns the acked ids this node still owned and the claimed jobs, best first; claimed
    rows that cannot be decoded go to `unreadable` when given.
    """
    rows = await _fetch(
        conn,
        ACK_AND_FETCH_JOBS,
        node,
        [a.job_id for a in acks],
        [a.attempt for a in acks],
        [a.state for a in acks],
        [a.delay_s for a in acks],
        [a.error for a in acks],
        [a.undo_attempt for a in acks],
        queue,
        demand,
        claim,
        [a.claim for a in acks],
    )
    owned = {row["id"] for row in rows if row["acked"]}
    return owned, _claimed([row for row in rows if not row["acked"]], unreadable)


async def register_node(
    conn: Conn, *, name: str, host: str, pid: int, queues: str, lease_s: float
) -> None:
    await _fetch(conn, REGISTER_NODE, name, host, pid, queues, lease_s)


async def rescue_node_jobs(conn: Conn, node: str) -> list[int]:
    """At a node's start: give back the jobs an earlier process of the same name left executing."""
    return [row["id"] for row in await _fetch(conn, RESCUE_NODE_JOBS, node)]


async def lock_node_name(conn: Conn, node: str) -> bool:
    """Take the session lock on `node`'s name; False if another live session holds it."""
    return bool((await _fetch(conn, LOCK_NODE_NAME, node))[0]["locked"])


async def heartbeat_node(conn: Conn, *, name: str, queues: str, lease_s: float) -> bool:
    """Refresh the node's lease; False if its row is gone."""
    return bool(await _fetch(conn, HEARTBEAT_NODE, name, queues, lease_s))


async def remove_node(conn: Conn, name: str) -> None:
    await _fetch(conn, REMOVE_NODE, name)


async def owned_jobs(
    conn: Conn, *, runs: Sequence[tuple[int, str | None]], node: str
) -> set[tuple[int, str | None]]:
    """The runs (job id, claim id) among `runs` that `node` still holds (executing, in
    that claim)."""
    ids, claims = [r[0] for r in runs], [r[1] for r in runs]
    rows = await _fetch(conn, OWNED_JOBS, ids, claims, node)
    return {(row["id"], row["claim"]) for row in rows}


async def cancelled_jobs(conn: Conn, ids: Sequence[int]) -> set[int]:
    """The ids among `ids` whose job is cancelled."""
    return {row["id"] for row in await _fetch(conn, CANCELLED_JOBS, list(ids))}
