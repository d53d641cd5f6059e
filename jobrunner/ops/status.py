"""`jobrunner status`: nodes and queues as the database sees them, as a table or as JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jobrunner.core.job import Job, JobState
from jobrunner.db import queries as _queries
from jobrunner.db.queries import NodeRow
from jobrunner.ops import limit_status as _limit_status
from jobrunner.ops.limit_status import QueueLimits

if TYPE_CHECKING:
    from jobrunner.db.connection import Connected as Client

STATES = tuple(s.value for s in JobState)


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """One queue across the live nodes that serve it, with its persisted state and job counts."""

    name: str
    nodes: tuple[str, ...]
    limit: int
    running: int
    paused_on: tuple[str, ...]
    persisted_paused: bool
    persisted_limit: int | None
    jobs: dict[str, int]
    ahead: int = 0  # of the executing jobs, claimed ahead by a node and not started yet

    @property
    def paused(self) -> bool:
        """Paused on every live node serving it; with none, the persisted flag."""
        if not self.nodes:
            return self.persisted_paused
        return len(self.paused_on) == len(self.nodes)


@dataclass(frozen=True, slots=True)
class Status:
    """What `jobrunner status` shows; `to_json()` is its stable JSON form."""

    now: datetime
    nodes: tuple[NodeRow, ...]
    queues: tuple[QueueStatus, ...]
    limits: dict[str, QueueLimits] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        queues = [_queue_json(q) for q in self.queues]
        for queue in queues:
            if queue["name"] in self.limits:
                queue["limits"] = self.limits[queue["name"]].to_json()
        return {
            "now": _iso(self.now),
            "nodes": [node_json(n) for n in self.nodes],
            "queues": queues,
        }


async def status(client: Client) -> Status:
    pool = client.pool
    nodes = await _queries.status_nodes(pool)
    persisted = await _queries.persisted_queues(pool)
    counts = await _queries.count_jobs(pool)
    now = nodes[0].now if nodes else await _queries.database_now(pool)
    live = [n for n in nodes if n.live]
    names = sorted({q for n in live for q in n.queues} | set(persisted) | set(counts))
    queues = tuple(
        _queue(name, live, persisted.get(name, (False, None)), counts.get(name, {}))
        for name in names
    )
    overrides = await _queries.global_limits(pool)
    limits = await _limit_status.queue_limits(pool, live, names, overrides)
    return Status(now, tuple(nodes), queues, limits)


def _queue(
    name: str, live: Sequence[NodeRow], persisted: tuple[bool, int | None], counts: dict[str, int]
) -> QueueStatus:
    serving = sorted((n for n in live if name in n.queues), key=lambda n: n.name)
    on = [n.queues[name] for n in serving]
    return QueueStatus(
        name=name,
        nodes=tuple(n.name for n in serving),
        limit=sum(int(q.get("limit", 0)) for q in on),
        running=sum(int(q.get("running", 0)) for q in on),
        ahead=sum(int(q.get("ahead", 0)) for q in on),
        paused_on=tuple(n.name for n in serving if n.queues[name].get("paused")),
        persisted_paused=persisted[0],
        persisted_limit=persisted[1],
        jobs={state: counts.get(state, 0) for state in STATES},
    )


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def job_json(job: Job) -> dict[str, Any]:
    """A job's stable JSON form (`jobs list|show --json`, `enqueue --json`, the web API)."""
    return {
        "id": job.id,
        "state": job.state.value,
        "queue": job.queue,
        "worker": job.worker,
        "args": job.args,
        "meta": job.meta,
        "tags": list(job.tags),
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "priority": job.priority,
        "errors": [
            {"attempt": e.attempt, "at": e.at, "error": e.error, "traceback": e.traceback}
            for e in job.errors
        ],
        "inserted_at": _iso(job.inserted_at),
        "scheduled_at": _iso(job.scheduled_at),
        "attempted_at": _iso(job.attempted_at),
        "completed_at": _iso(job.completed_at),
        "discarded_at": _iso(job.discarded_at),
        "cancelled_at": _iso(job.cancelled_at),
        "attempted_by": list(job.attempted_by),
        "result": job.result,
        "workflow_id": job.workflow_id,
        "step": job.step,
    }


def node_json(node: NodeRow) -> dict[str, Any]:
    return {
        "name": node.name,
        "host": node.host,
        "pid": node.pid,
        "started_at": _iso(node.started_at),
        "heartbeat_at": _iso(node.heartbeat_at),
        "expires_at": _iso(node.expires_at),
        "live": node.live,
        "leader": node.leader,
        "queues": {
            name: {
                "limit": q.get("limit"),
                "paused": bool(q.get("paused")),
                "running": q.get("running", 0),
                "ahead": q.get("ahead", 0),
            }
            for name, q in sorted(node.queues.items())
        },
    }


def _queue_json(queue: QueueStatus) -> dict[str, Any]:
    return {
        "name": queue.name,
        "nodes": list(queue.nodes),
        "limit": queue.limit,
        "running": queue.running,
        "ahead": queue.ahead,
        "paused": queue.paused,
        "paused_on": list(queue.paused_on),
        "persisted": {"paused": queue.persisted_paused, "limit": queue.persisted_limit},
        "jobs": queue.jobs,
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Left-aligned columns two spaces apart; numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [
        all(_is_number(r[i]) for r in cells[1:]) and len(cells) > 1 for i in range(len(headers))
    ]
    lines = []
    for row in cells:
        parts = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return lines


def _is_number(text: str) -> bool:
    return text.isdigit() or text == "-"


def _ago(now: datetime, at: datetime) -> str:
    seconds = max((now - at).total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _node_queues(node: NodeRow) -> str:
    parts = []
    for name, q in sorted(node.queues.items()):
        paused = " paused" if q.get("paused") else ""
        ahead = f" +{q['ahead']} ahead" if q.get("ahead") else ""
        parts.append(f"{name}:{q.get('running', 0)}/{q.get('limit')}{ahead}{paused}")
    return ", ".join(parts)


def render(status: Status) -> str:
    """The status as aligned tables for a terminal."""
    lines = ["NODES"]
    if status.nodes:
        lines += _node_table(status, status.nodes)
    else:
        lines.append("no node is running; start one with 'jobrunner start'")
    lines += ["", "QUEUES"]
    if status.queues:
        headers = ("QUEUE", "NODES", "LIMIT", "RUNNING", "PAUSED", *(s.upper() for s in STATES))
        lines += table(headers, [_queue_row(q) for q in status.queues])
    else:
        lines.append("no queue has nodes or jobs yet")
    lines += _limit_status.render(list(status.limits.values()), table)
    persisted = [q for q in status.queues if q.persisted_paused or q.persisted_limit]
    if persisted:
        lines += [
            "",
            "persisted for nodes that start later: " + "; ".join(_persisted(q) for q in persisted),
        ]
    return "\n".join(lines)


def render_node(status: Status, node: NodeRow) -> str:
    """One node's row of the NODES table, with its header."""
    return "\n".join(_node_table(status, [node]))


def _node_table(status: Status, nodes: Sequence[NodeRow]) -> list[str]:
    rows = [
        (
            n.name,
            n.host,
            n.pid,
            n.started_at.strftime("%Y-%m-%d %H:%M:%SZ"),
            _ago(status.now, n.heartbeat_at) + ("" if n.live else " (expired)"),
            "yes" if n.leader else "no",
            _node_queues(n),
        )
        for n in nodes
    ]
    return table(
        ("NAME", "HOST", "PID", "STARTED", "HEARTBEAT", "LEADER", "QUEUES (running/limit)"), rows
    )


def _queue_row(queue: QueueStatus) -> tuple[object, ...]:
    if not queue.nodes:
        paused = "yes" if queue.persisted_paused else "no"
        return (queue.name, 0, None, None, paused, *(queue.jobs[s] for s in STATES))
    if queue.paused:
        paused = "yes"
    elif queue.paused_on:
        paused = f"{len(queue.paused_on)}/{len(queue.nodes)} nodes"
    else:
        paused = "no"
    return (
        queue.name,
        len(queue.nodes),
        queue.limit,
        f"{queue.running} +{queue.ahead} ahead" if queue.ahead else queue.running,
        paused,
        *(queue.jobs[s] for s in STATES),
    )


def _persisted(queue: QueueStatus) -> str:
    parts = (["paused"] if queue.persisted_paused else []) + (
        [f"limit {queue.persisted_limit}"] if queue.persisted_limit else []
    )
    return f"{queue.name} {', '.join(parts)}"
