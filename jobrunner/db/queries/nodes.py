"""Nodes: registering, heartbeats and leases, and the jobs a node holds."""

from __future__ import annotations

from collections.abc import Sequence

from jobrunner.db.queries.jobs import Conn, _fetch, _sql

REGISTER_NODE = _sql("register_node")
HEARTBEAT_NODE = _sql("heartbeat_node")
REMOVE_NODE = _sql("remove_node")
RESCUE_NODE_JOBS = _sql("rescue_node_jobs")
OWNED_JOBS = _sql("owned_jobs")
LOCK_NODE_NAME = _sql("lock_node_name")
CANCELLED_JOBS = _sql("cancelled_jobs")


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
