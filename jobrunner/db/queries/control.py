"""Statements of control commands, status and the operator's job queries."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobrunner.core.job import Job
from jobrunner.core.limits import RateLimit
from jobrunner.db.queries.jobs import Conn, _fetch, _sql

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
COUNT_UNFINISHED_JOBS = _sql("count_unfinished_jobs")
QUEUE_HAS_JOBS = _sql("queue_has_jobs")
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
    resumed: frozenset[str] = frozenset()  # a resume was persisted: a configured pause yields
    global_limits: dict[str, int] = field(default_factory=dict)
    rate_limits: dict[str, RateLimit] = field(default_factory=dict)  # set live, persisted


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
    resumed = frozenset(r["name"] for r in rows if r["name"] is not None and r["paused"] is False)
    limits = {r["name"]: r["limit"] for r in rows if r["name"] is not None and r["limit"]}
    global_limits = {
        r["name"]: r["global_limit"] for r in rows if r["name"] is not None and r["global_limit"]
    }
    rate_limits = {
        r["name"]: RateLimit(r["rate_allowed"], r["rate_period_s"])
        for r in rows
        if r["name"] is not None and r["rate_allowed"]
    }
    return ControlStart(
        rows[0]["snapshot"],
        rows[0]["started_at"],
        paused,
        limits,
        resumed,
        global_limits,
        rate_limits,
    )


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
    return [node_row(r) for r in await _fetch(conn, STATUS_NODES)]


def node_row(r: Any) -> NodeRow:
    """A NodeRow from a row of STATUS_NODES."""
    return NodeRow(
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


async def persisted_queues(conn: Conn) -> dict[str, tuple[bool, int | None]]:
    """queue -> (paused, limit override) as persisted for nodes that start later."""
    return {r["name"]: (r["paused"], r["limit"]) for r in await _fetch(conn, PERSISTED_QUEUES)}


async def count_jobs(conn: Conn) -> dict[str, dict[str, int]]:
    """queue -> state -> how many jobs."""
    counts: dict[str, dict[str, int]] = {}
    for row in await _fetch(conn, COUNT_JOBS):
        counts.setdefault(row["queue"], {})[row["state"]] = int(row["n"])
    return counts


async def count_unfinished_jobs(conn: Conn) -> dict[str, dict[str, int]]:
    """queue -> state -> how many jobs, for the states that have not finished (cheap)."""
    counts: dict[str, dict[str, int]] = {}
    for row in await _fetch(conn, COUNT_UNFINISHED_JOBS):
        counts.setdefault(row["queue"], {})[row["state"]] = int(row["n"])
    return counts


async def queue_has_jobs(conn: Conn, queue: str) -> bool:
    return bool((await _fetch(conn, QUEUE_HAS_JOBS, queue))[0]["found"])


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
