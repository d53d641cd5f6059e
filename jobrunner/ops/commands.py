"""Issuing control commands: validate the target, insert the command, wait for the nodes."""

from __future__ import annotations

import asyncio
import getpass
import math
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobrunner.core.config import MAX_QUEUE_LIMIT
from jobrunner.core.errors import JobRunnerError
from jobrunner.core.job import JobState
from jobrunner.core.limits import RateLimit, check_global_limit
from jobrunner.core.new_job import validate_queue
from jobrunner.core.worker import registered
from jobrunner.daemon.control import PAUSE, RESUME, SCALE, STOP
from jobrunner.db import queries as _queries
from jobrunner.db.queries import NodeRow

if TYPE_CHECKING:
    from jobrunner.db.connection import Connected as Client

CONTROL_HISTORY_S = 7 * 86_400.0  # commands older than this are pruned as new ones arrive
POLL_S = 0.05
GLOBAL_LIMIT = "global_limit"
RATE_LIMIT = "rate_limit"


class UnknownTarget(JobRunnerError, ValueError):
    """no such queue or node."""


@dataclass(frozen=True, slots=True)
class ControlResult:
    """What became of a control command.

    `targets` are the live nodes it was aimed at (those serving the queue, or the one named),
    `applied` maps each node that applied it to what it reported, and `missing` lists the
    targets that did not within the timeout. `persisted` is true when the queue state was
    saved for nodes that start later (pause, resume and scale aimed at every node, and every
    change of a global or rate limit).

    Example:
        >>> result = await client.pause_queue("emails")
        >>> result.ok, sorted(result.applied), result.missing
        (True, ['web-1', 'web-2'], ())
    """

    id: int
    command: str
    queue: str | None
    node: str | None
    targets: tuple[str, ...]
    applied: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    persisted: bool = False

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(n for n in self.targets if n not in self.applied)

    @property
    def ok(self) -> bool:
        """Every target applied the command."""
        return not self.missing


def issuer() -> str:
    """user@host, recorded with each command."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry for this uid (containers)
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


async def known_queues(client: Client) -> set[str]:
    """Queues jobrunner knows of without scanning jobs: nodes, persisted state, config, workers."""
    pool = client.pool
    nodes = await _queries.status_nodes(pool)
    return queues_known(nodes, await _queries.persisted_queues(pool), client.settings.queues)


def queues_known(
    nodes: Sequence[NodeRow], persisted: Iterable[str], configured: Iterable[str]
) -> set[str]:
    """The queues of nodes, persisted state, configuration and registered workers."""
    known = {q for node in nodes for q in node.queues}
    known.update(persisted)
    known.update(configured)
    known.update(w.queue for w in registered().values())
    return known


async def check_queue(client: Client, queue: str) -> None:
    """Raise UnknownTarget unless some node, persisted state, worker or job uses `queue`."""
    validate_queue(queue)
    known = await known_queues(client)
    if queue in known or await _queries.queue_has_jobs(client.pool, queue):
        return
    raise unknown_queue(queue, known)


def unknown_queue(queue: str, known: Iterable[str]) -> UnknownTarget:
    return UnknownTarget(
        f"unknown queue {queue!r}: no node serves it and no job uses it "
        f"(known queues: {', '.join(sorted(known)) or 'none'}); pass --force to use it anyway"
    )


async def check_node(client: Client, node: str, queue: str | None) -> None:
    """Raise UnknownTarget unless `node` is a live daemon (serving `queue` when given).

    Node rows that serve no queue (a drain or an inline test process) run no control loop.
    """
    node_target(await _queries.status_nodes(client.pool), node, queue)


def node_target(nodes: Sequence[NodeRow], node: str, queue: str | None) -> None:
    """Raise UnknownTarget unless `node` is among the live `nodes` (serving `queue`)."""
    live = [n for n in nodes if n.live and n.queues]
    found = next((n for n in live if n.name == node), None)
    if found is None:
        names = ", ".join(n.name for n in live) or "none"
        raise UnknownTarget(
            f"unknown node {node!r}: no live node has that name "
            f"(live nodes: {names}); see 'jobrunner status'"
        )
    if queue is not None and queue not in found.queues:
        raise UnknownTarget(
            f"node {node!r} does not serve queue {queue!r} "
            f"(it serves: {', '.join(sorted(found.queues)) or 'none'})"
        )


def check_limit(limit: object) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_QUEUE_LIMIT:
        raise ValueError(
            f"queue limit must be a whole number from 1 to {MAX_QUEUE_LIMIT}, got {limit!r}"
        )
    return limit


async def issue(
    client: Client,
    command: str,
    *,
    queue: str | None = None,
    node: str | None = None,
    payload: Mapping[str, Any] | None = None,
    timeout_s: float = 5.0,
    issued_by: str | None = None,
) -> ControlResult:
    """Insert a command (persisting queue state when aimed at every node) and wait for it.

    Pause, resume and scale (of the limit, the global limit or the rate limit) aimed at every
    node update `jobrunner_queues` in the same transaction, so nodes that start later honour
    them.
    """
    payload = dict(payload or {})
    persist = persisted_state(command, queue, node, payload)
    async with client.pool.acquire() as conn, conn.transaction():
        await _queries.prune_control(conn, max_age_s=CONTROL_HISTORY_S)
        control_id, _ = await _queries.insert_control(
            conn,
            command=command,
            queue=queue,
            node=node,
            payload=payload,
            issued_by=issued_by or issuer(),
        )
        if persist is not None and GLOBAL_LIMIT in payload:
            await _queries.persist_global_limit(conn, persist["queue"], payload[GLOBAL_LIMIT])
        elif persist is not None and RATE_LIMIT in payload:
            rate = payload[RATE_LIMIT]
            await _queries.persist_rate_limit(
                conn,
                persist["queue"],
                None if rate is None else RateLimit(rate["allowed"], rate["period_s"]),
            )
        elif persist is not None:
            await _queries.persist_queue_state(conn, **persist)
    targets = tuple(await _queries.control_targets(client.pool, control_id))
    applied = await wait_applied(client, control_id, targets, timeout_s)
    return ControlResult(control_id, command, queue, node, targets, applied, persist is not None)


def persisted_state(
    command: str, queue: str | None, node: str | None, payload: Mapping[str, Any]
) -> dict[str, Any] | None:
    """persist_queue_state's arguments when the command is aimed at every node serving a
    queue (pause, resume, scale), for nodes that start later; None otherwise."""
    if node is not None or queue is None or command not in (PAUSE, RESUME, SCALE):
        return None
    return {
        "queue": queue,
        "paused": {PAUSE: True, RESUME: False}.get(command),
        "limit": payload.get("limit"),
        "reset_limit": command == SCALE and payload.get("limit") is None,
    }


async def wait_applied(
    client: Client, control_id: int, targets: tuple[str, ...], timeout_s: float
) -> dict[str, dict[str, Any]]:
    """Poll until every target applied the command, or `timeout_s` seconds passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        applied = await _queries.control_applied(client.pool, control_id)
        if set(targets) <= set(applied) or loop.time() >= deadline:
            return applied
        await asyncio.sleep(POLL_S)


async def pause(
    client: Client,
    queue: str,
    node: str | None,
    *,
    timeout_s: float,
    force: bool,
    issued_by: str | None = None,
) -> ControlResult:
    await _check_target(client, queue, node, force)
    return await issue(
        client, PAUSE, queue=queue, node=node, timeout_s=timeout_s, issued_by=issued_by
    )


async def resume(
    client: Client,
    queue: str,
    node: str | None,
    *,
    timeout_s: float,
    force: bool,
    issued_by: str | None = None,
) -> ControlResult:
    await _check_target(client, queue, node, force)
    return await issue(
        client, RESUME, queue=queue, node=node, timeout_s=timeout_s, issued_by=issued_by
    )


async def scale(
    client: Client,
    queue: str,
    limit: int | None,
    node: str | None,
    *,
    timeout_s: float,
    force: bool,
    issued_by: str | None = None,
) -> ControlResult:
    """Scale to `limit`; None: back to the limit each node was started with."""
    if limit is not None:
        check_limit(limit)
    await _check_target(client, queue, node, force)
    return await issue(
        client,
        SCALE,
        queue=queue,
        node=node,
        payload={"limit": limit},
        timeout_s=timeout_s,
        issued_by=issued_by,
    )


async def scale_global(
    client: Client,
    queue: str,
    global_limit: int | None,
    *,
    timeout_s: float,
    force: bool,
    issued_by: str | None = None,
) -> ControlResult:
    """Set the cluster-wide limit of `queue` (None: back to the nodes' config), persisted.

    Every claim of the queue reads it, so it holds from its commit on; the nodes that serve
    the queue switch to the limited claim when they apply the command.
    """
    if global_limit is not None:
        check_global_limit(global_limit)
    await _check_target(client, queue, None, force)
    return await issue(
        client,
        SCALE,
        queue=queue,
        payload={GLOBAL_LIMIT: global_limit},
        timeout_s=timeout_s,
        issued_by=issued_by,
    )


async def scale_rate(
    client: Client,
    queue: str,
    rate: RateLimit | None,
    *,
    timeout_s: float,
    force: bool,
    issued_by: str | None = None,
) -> ControlResult:
    """Set the rate limit of `queue` on every node (None: back to each node's configured
    one), persisted: it wins over the nodes' configured rate limit, and a node that starts
    later, or restarts, claims under it too. A queue configured without a rate limit gets it.
    """
    await _check_target(client, queue, None, force)
    value = None if rate is None else {"allowed": rate.allowed, "period_s": rate.period_s}
    return await issue(
        client,
        SCALE,
        queue=queue,
        payload={RATE_LIMIT: value},
        timeout_s=timeout_s,
        issued_by=issued_by,
    )


async def stop(
    client: Client,
    node: str | None,
    *,
    grace_s: float | None,
    timeout_s: float,
    issued_by: str | None = None,
) -> ControlResult:
    if grace_s is not None and not (isinstance(grace_s, int | float) and 0 <= grace_s < math.inf):
        raise ValueError(f"grace must be seconds >= 0, got {grace_s!r}")
    if node is not None:
        await check_node(client, node, None)
    return await issue(
        client,
        STOP,
        node=node,
        payload={"grace_s": grace_s},
        timeout_s=timeout_s,
        issued_by=issued_by,
    )


async def _check_target(client: Client, queue: str, node: str | None, force: bool) -> None:
    validate_queue(queue)
    if node is not None:
        await check_node(client, node, queue)
    elif not force:
        await check_queue(client, queue)


def job_states(state: str | Sequence[str]) -> list[str]:
    """One state or several as a list, each checked."""
    states = [state] if isinstance(state, str) else list(state)
    valid = [s.value for s in JobState]
    for name in states:
        if name not in valid:
            raise ValueError(f"unknown job state {name!r}; states are {', '.join(valid)}")
    return states
