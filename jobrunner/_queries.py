"""The only module that runs jobrunner's SQL: statements live in sql/*.sql."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from importlib.resources import files
from typing import Any, Protocol

import asyncpg

from . import _db
from .errors import InvalidJob, JobRunnerError, SchemaMissing
from .job import _STATES, Job, inserted, new_inserted_job
from .worker import NewJob


def _sql(name: str) -> str:
    return (files("jobrunner") / "sql" / f"{name}.sql").read_text()


INSERT_JOBS = _sql("insert_jobs")
INSERT_PLAIN_JOB = _sql("insert_plain_job")
INSERT_PLAIN_JOBS = _sql("insert_plain_jobs")
FIND_UNIQUE_JOBS = _sql("find_unique_jobs")
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


async def insert_jobs(conn: Conn, jobs: Sequence[NewJob]) -> list[Job]:
    """Insert `jobs` in one statement; a unique conflict returns the existing job.

    The result is in the order of `jobs`, conflicts marked `conflict=True`. A conflicting
    job that left its unique states before it could be looked up no longer blocks: those
    jobs are inserted again.
    """
    if all(job.unique is None for job in jobs):
        if len(jobs) == 1:
            return [await insert_plain_job(conn, jobs[0])]
        return await insert_plain_jobs(conn, jobs)
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


async def _insert_round(
    conn: Conn,
    jobs: Sequence[NewJob],
    keys: Sequence[str | None],
    todo: Sequence[int],
    results: dict[int, Job],
) -> dict[int, str]:
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


async def insert_plain_job(conn: Conn, job: NewJob) -> Job:
    """Insert one job that is not unique."""
    args, meta = job.encoded_args(), job.encoded_meta()
    rows = await _fetch(
        conn,
        INSERT_PLAIN_JOB,
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
    job_id, state, inserted_at, scheduled_at = rows[0][:4]
    return inserted(_new_job(job, args, meta), job_id, _STATES[state], inserted_at, scheduled_at)


async def insert_plain_jobs(conn: Conn, jobs: Sequence[NewJob]) -> list[Job]:
    """Insert jobs that are not unique in one statement; the result is in the order of `jobs`.

    A column whose jobs all share one value is sent as that value alone. The jobs are built
    while the database inserts them (their ids, states and times are set once it has).
    """
    args = [j.encoded_args() for j in jobs]
    metas = _one_or_all([j.encoded_meta() for j in jobs])
    query = asyncio.ensure_future(
        _fetch(
            conn,
            INSERT_PLAIN_JOBS,
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
    )
    if len(metas) == 1:
        metas = metas * len(jobs)
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
    ids, states, scheduled_ats, inserted_at = rows[0]
    if ids != sorted(ids):  # the arrays are in id order in practice, but need not be
        order = sorted(range(len(ids)), key=ids.__getitem__)
        ids, states = [ids[i] for i in order], [states[i] for i in order]
        scheduled_ats = [scheduled_ats[i] for i in order]
    return [
        inserted(job, job_id, _STATES[state], inserted_at, at if at is not None else inserted_at)
        for job, job_id, state, at in zip(built, ids, states, scheduled_ats, strict=True)
    ]


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


async def fetch_jobs(
    conn: Conn, *, queue: str, demand: int, node: str, claim: str | None = None
) -> list[Job]:
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
) -> tuple[set[int], list[Job]]:
    """Write `acks` and claim up to `demand` jobs of `queue`, in one statement.

    Returns the acked ids this node still owned and the claimed jobs, best first.
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
    )
    owned = {row["id"] for row in rows if row["acked"]}
    jobs = [Job.from_record(row) for row in rows if not row["acked"]]
    jobs.sort(key=lambda j: (j.priority, j.scheduled_at, j.id))
    return owned, jobs


async def register_node(
    conn: Conn, *, name: str, host: str, pid: int, queues: str, lease_s: float
) -> None:
    await _fetch(conn, REGISTER_NODE, name, host, pid, queues, lease_s)


async def rescue_node_jobs(conn: Conn, node: str) -> list[int]:
    """At a node's start: give back the jobs an earlier process of the same name left executing."""
    return [row["id"] for row in await _fetch(conn, RESCUE_NODE_JOBS, node)]


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


async def insert_cron_jobs(
    conn: Conn, jobs: Sequence[CronJob], progress: Mapping[str, datetime]
) -> list[Job]:
    """Insert `jobs` (a slot already inserted is skipped) and move entries' progress forward.

    Returns the jobs actually inserted.
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


# --- control commands, status and the operator's job queries ------------------------------

INSERT_CONTROL = _sql("insert_control")
PERSIST_QUEUE_STATE = _sql("persist_queue_state")
PRUNE_CONTROL = _sql("prune_control")
CONTROL_TARGETS = _sql("control_targets")
CONTROL_APPLIED = _sql("control_applied")
CONTROL_PREPARE = _sql("control_prepare")
PENDING_CONTROL = _sql("pending_control")
RECORD_CONTROL_APPLIED = _sql("record_control_applied")
STATUS_NODES = _sql("status_nodes")
PERSISTED_QUEUES = _sql("persisted_queues")
COUNT_JOBS = _sql("count_jobs")
QUEUE_HAS_JOBS = _sql("queue_has_jobs")
LIST_JOBS = _sql("list_jobs")
RETRY_JOBS = _sql("retry_jobs")
DRAIN_BASELINE = _sql("drain_baseline")
COUNT_WAITING = _sql("count_waiting")
STAGE_QUEUES = _sql("stage_queues")
DRAIN_OUTCOMES = _sql("drain_outcomes")
WAITING_WORKERS = _sql("waiting_workers")


@dataclass(frozen=True, slots=True)
class ControlCommand:
    """A row of jobrunner_control as a node applies it."""

    id: int
    command: str
    queue: str | None
    node: str | None
    payload: dict[str, Any]
    issued_by: str


@dataclass(frozen=True, slots=True)
class ControlStart:
    """What a starting node reads in one snapshot: persisted state, and the snapshot."""

    snapshot: str
    started_at: datetime
    paused: frozenset[str]
    limits: dict[str, int]
    global_limits: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NodeRow:
    """A row of jobrunner_nodes, with its lease and leadership as of `now`."""

    name: str
    host: str
    pid: int
    queues: dict[str, dict[str, Any]]
    started_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    live: bool
    leader: bool
    now: datetime


@dataclass(frozen=True, slots=True)
class DrainBaseline:
    """The jobs a drain starts from (id -> attempt before it), the newest id and the time."""

    attempts: dict[int, int]
    max_id: int
    started_at: datetime


async def insert_control(
    conn: Conn,
    *,
    command: str,
    queue: str | None,
    node: str | None,
    payload: Mapping[str, Any],
    issued_by: str,
) -> tuple[int, datetime]:
    """Insert a command (daemons are woken at commit); its id and created_at."""
    rows = await _fetch(conn, INSERT_CONTROL, command, queue, node, json.dumps(payload), issued_by)
    return int(rows[0]["id"]), rows[0]["created_at"]


async def persist_queue_state(
    conn: Conn,
    queue: str,
    *,
    paused: bool | None = None,
    limit: int | None = None,
    reset_limit: bool = False,
) -> None:
    await _fetch(conn, PERSIST_QUEUE_STATE, queue, paused, limit, reset_limit)


async def prune_control(conn: Conn, *, max_age_s: float) -> None:
    await _fetch(conn, PRUNE_CONTROL, max_age_s)


async def control_targets(conn: Conn, control_id: int) -> list[str]:
    """The live nodes a command is aimed at (started before it was issued)."""
    return [row["name"] for row in await _fetch(conn, CONTROL_TARGETS, control_id)]


async def control_applied(conn: Conn, control_id: int) -> dict[str, dict[str, Any]]:
    """node -> result, for the nodes that applied the command."""
    rows = await _fetch(conn, CONTROL_APPLIED, control_id)
    return {row["node"]: json.loads(row["result"]) for row in rows}


async def control_prepare(conn: Conn, *, node: str, queues: Sequence[str]) -> ControlStart:
    rows = await _fetch(conn, CONTROL_PREPARE, node, list(queues))
    paused = frozenset(r["name"] for r in rows if r["name"] is not None and r["paused"])
    limits = {r["name"]: r["limit"] for r in rows if r["name"] is not None and r["limit"]}
    global_limits = {
        r["name"]: r["global_limit"] for r in rows if r["name"] is not None and r["global_limit"]
    }
    return ControlStart(rows[0]["snapshot"], rows[0]["started_at"], paused, limits, global_limits)


async def pending_control(
    conn: Conn, *, node: str, queues: Sequence[str], snapshot: str, started_at: datetime
) -> list[ControlCommand]:
    """Commands aimed at `node` that it has not applied yet, oldest first."""
    rows = await _fetch(conn, PENDING_CONTROL, node, list(queues), snapshot, started_at)
    return [
        ControlCommand(
            r["id"], r["command"], r["queue"], r["node"], json.loads(r["payload"]), r["issued_by"]
        )
        for r in rows
    ]


async def record_control_applied(
    conn: Conn, *, node: str, results: Mapping[int, Mapping[str, Any]]
) -> None:
    await _fetch(
        conn, RECORD_CONTROL_APPLIED, list(results), node, [json.dumps(r) for r in results.values()]
    )


async def status_nodes(conn: Conn) -> list[NodeRow]:
    """Every node row, oldest first."""
    rows = await _fetch(conn, STATUS_NODES)
    return [
        NodeRow(
            r["name"],
            r["host"],
            r["pid"],
            json.loads(r["queues"]),
            r["started_at"],
            r["heartbeat_at"],
            r["expires_at"],
            r["live"],
            r["leader"],
            r["now"],
        )
        for r in rows
    ]


async def persisted_queues(conn: Conn) -> dict[str, tuple[bool, int | None]]:
    """queue -> (paused, limit override) as persisted for nodes that start later."""
    return {r["name"]: (r["paused"], r["limit"]) for r in await _fetch(conn, PERSISTED_QUEUES)}


async def count_jobs(conn: Conn) -> dict[str, dict[str, int]]:
    """queue -> state -> how many jobs."""
    counts: dict[str, dict[str, int]] = {}
    for row in await _fetch(conn, COUNT_JOBS):
        counts.setdefault(row["queue"], {})[row["state"]] = int(row["n"])
    return counts


async def queue_has_jobs(conn: Conn, queue: str) -> bool:
    return bool((await _fetch(conn, QUEUE_HAS_JOBS, queue))[0]["found"])


async def list_jobs(
    conn: Conn, *, states: Sequence[str] | None, queue: str | None, worker: str | None, limit: int
) -> list[Job]:
    """Jobs matching the filters, newest first."""
    rows = await _fetch(
        conn, LIST_JOBS, None if states is None else list(states), queue, worker, limit
    )
    return [Job.from_record(row) for row in rows]


async def retry_jobs(
    conn: Conn, *, states: Sequence[str], queue: str | None, worker: str | None
) -> list[int]:
    """Make every matching job that is not executing available now; their ids."""
    rows = await _fetch(conn, RETRY_JOBS, list(states), queue, worker)
    return [row["id"] for row in rows]


async def drain_baseline(
    conn: Conn, *, queues: Sequence[str], states: Sequence[str]
) -> DrainBaseline:
    rows = await _fetch(conn, DRAIN_BASELINE, list(queues), list(states))
    attempts = {r["id"]: r["attempt"] for r in rows if r["id"] is not None}
    return DrainBaseline(attempts, int(rows[-1]["max_id"]), rows[-1]["now"])


async def count_waiting(
    conn: Conn, *, queues: Sequence[str], states: Sequence[str], since: datetime | None = None
) -> dict[str, int]:
    """queue -> how many of its jobs are in `states` (queues with none are left out).

    Jobs that snoozed since `since` are not counted.
    """
    rows = await _fetch(conn, COUNT_WAITING, list(queues), list(states), since)
    return {row["queue"]: int(row["n"]) for row in rows}


async def stage_queues(conn: Conn, queues: Sequence[str], *, since: datetime) -> None:
    """Make the scheduled and retryable jobs of `queues` available now (but those snoozed
    since `since`)."""
    await _fetch(conn, STAGE_QUEUES, list(queues), since)


async def drain_outcomes(
    conn: Conn, *, queues: Sequence[str], baseline: DrainBaseline
) -> list[Job]:
    """The jobs a drain ran: its baseline and the ones inserted and attempted since."""
    rows = await _fetch(
        conn,
        DRAIN_OUTCOMES,
        list(queues),
        list(baseline.attempts),
        baseline.max_id,
        baseline.started_at,
    )
    return [Job.from_record(row) for row in rows]


async def waiting_workers(conn: Conn, *, queues: Sequence[str], states: Sequence[str]) -> list[str]:
    """The worker names of the jobs in `states` in `queues`."""
    rows = await _fetch(conn, WAITING_WORKERS, list(queues), list(states))
    return [row["worker"] for row in rows]
