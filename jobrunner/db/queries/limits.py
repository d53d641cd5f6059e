"""Queries of the cluster-wide queue limits: the limited claim, the rate window, status."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jobrunner.core.job import Job
from jobrunner.core.limits import Limits, RateLimit
from jobrunner.db.queries.jobs import Ack, Conn, Unreadable, _claimed, _fetch, _sql, ack_columns

CLAIM_LIMITED = _sql("claim_limited")
ACK_AND_CLAIM_LIMITED = _sql("ack_and_claim_limited")
ACK_AND_CLAIM_SLOTS = _sql("ack_and_claim_slots")
RATE_WAIT = _sql("rate_wait")
PERSIST_GLOBAL_LIMIT = _sql("persist_global_limit")
PERSIST_RATE_LIMIT = _sql("persist_rate_limit")
LIMIT_STATUS = _sql("limit_status")
GLOBAL_LIMITS = _sql("global_limits")


async def claim_limited(
    conn: Conn,
    *,
    queue: str,
    demand: int,
    node: str,
    claim: str | None,
    limits: Limits,
    unreadable: list[Unreadable] | None = None,
) -> list[Job]:
    """Claim up to `demand` jobs of `queue` under its cluster-wide `limits`, best first.

    Rows that cannot be decoded go to `unreadable` when given (as for `fetch_jobs`).
    """
    rate = limits.rate_limit
    fields, keys = limits.partition_args()
    rows = await _fetch(
        conn,
        CLAIM_LIMITED,
        queue,
        demand,
        node,
        claim,
        limits.global_limit,
        None if rate is None else rate.allowed,
        None if rate is None else rate.period_s,
        fields,
        keys,
    )
    return _claimed(rows, unreadable)


async def ack_and_claim_limited(
    conn: Conn,
    node: str,
    acks: Sequence[Ack],
    *,
    queue: str,
    demand: int,
    claim: str | None,
    limits: Limits,
    unreadable: list[Unreadable] | None = None,
) -> tuple[set[int], list[Job]]:
    """Write `acks`, then claim up to `demand` jobs of `queue` under its cluster-wide
    `limits`, in one statement (the slots the acks free count for the claim).

    Returns the acked ids this node still owned and the claimed jobs, best first, as
    `ack_and_fetch_jobs` does.
    """
    rate = limits.rate_limit
    fields, keys = limits.partition_args()
    rows = await _fetch(
        conn,
        ACK_AND_CLAIM_LIMITED,
        node,
        *ack_columns(acks),
        queue,
        demand,
        claim,
        [a.claim for a in acks],
        limits.global_limit,
        None if rate is None else rate.allowed,
        None if rate is None else rate.period_s,
        fields,
        keys,
        [a.result for a in acks],
    )
    owned = {row["id"] for row in rows if row["acked"]}
    return owned, _claimed([row for row in rows if not row["acked"]], unreadable)


@dataclass(frozen=True, slots=True)
class Slots:
    """A node's slots of a slot-counted queue, as its last ask left them: how many it holds,
    and its fair share while other nodes wait for slots (None: nobody waits)."""

    held: int
    cap: int | None


async def ack_and_claim_slots(
    conn: Conn,
    node: str,
    acks: Sequence[Ack],
    *,
    queue: str,
    demand: int,
    claim: str | None,
    started: int,
    global_limit: int,
    limit: int,
    have: int,
    keep: int,
    unreadable: list[Unreadable] | None = None,
) -> tuple[set[int], list[Job], Slots]:
    """Write `acks`, claim up to `demand` jobs of `queue` (the first `started` start now),
    and ask for the node's slots: it keeps `keep`, holds `have` jobs that need one, and runs
    at most `limit`. Returns the acked ids this node still owned, the claimed jobs, and its
    slots now."""
    rows = await _fetch(
        conn,
        ACK_AND_CLAIM_SLOTS,
        node,
        *ack_columns(acks),
        queue,
        demand,
        claim,
        [a.claim for a in acks],
        started,
        global_limit,
        limit,
        have,
        keep,
        [a.result for a in acks],
    )
    owned = {row["id"] for row in rows if row["acked"]}
    last = rows[-1]
    jobs = [row for row in rows if row["acked"] is False]
    return owned, _claimed(jobs, unreadable), Slots(last["held"], last["cap"])


async def rate_wait(conn: Conn, *, queue: str, rate: RateLimit) -> float | None:
    """Seconds until the oldest start in the queue's rate window leaves it; None: empty."""
    rows = await _fetch(conn, RATE_WAIT, queue, rate.period_s)
    wait: float | None = rows[0]["wait_s"]
    return wait


async def persist_global_limit(conn: Conn, queue: str, global_limit: int | None) -> None:
    await conn.execute(PERSIST_GLOBAL_LIMIT, queue, global_limit)


async def persist_rate_limit(conn: Conn, queue: str, rate: RateLimit | None) -> None:
    """Persist `queue`'s rate limit (None: back to the nodes' configured one)."""
    allowed, period_s = (None, None) if rate is None else (rate.allowed, rate.period_s)
    await conn.execute(PERSIST_RATE_LIMIT, queue, allowed, period_s)


async def global_limits(conn: Conn) -> dict[str, int]:
    """queue -> the persisted global limit."""
    return {r["name"]: r["global_limit"] for r in await _fetch(conn, GLOBAL_LIMITS)}


@dataclass(frozen=True, slots=True)
class LimitUse:
    """How much of its cluster-wide limits a queue uses now."""

    global_override: int | None
    executing: int
    started: int
    partitions: int
    busiest: list[dict[str, Any]]
    slots: dict[str, int]  # node -> slots of the global limit it holds (a global limit alone)


async def limit_status(conn: Conn, *, queue: str, limits: Limits, top: int = 5) -> LimitUse:
    fields, keys = limits.partition_args()
    rate = limits.rate_limit
    row = (
        await _fetch(
            conn, LIMIT_STATUS, queue, None if rate is None else rate.period_s, fields, keys, top
        )
    )[0]
    busiest = json.loads(row["busiest"])
    for part in busiest:
        if limits.partition is not None:
            part["partition"] = limits.partition.name(json.loads(part["partition"]))
    return LimitUse(
        global_override=row["global_override"],
        executing=row["executing"],
        started=row["started"],
        partitions=row["partitions"] if limits.partition is not None else 0,
        busiest=busiest,
        slots=json.loads(row["slots"]),
    )
