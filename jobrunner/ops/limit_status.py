"""The cluster-wide limits part of `jobrunner status`: limits, rate window use, partitions."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobrunner.core.limits import Limits, Partition, RateLimit
from jobrunner.db import queries as _queries
from jobrunner.db.queries import LimitUse, NodeRow

if TYPE_CHECKING:
    from jobrunner.db.queries import Conn

BUSIEST = 5


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """A limited queue's limits (as its live nodes run them) and its use now."""

    name: str
    limits: Limits
    use: LimitUse

    @property
    def global_limit(self) -> int | None:
        """The persisted global limit wins over the nodes' configured one."""
        return self.use.global_override or self.limits.global_limit

    def to_json(self) -> dict[str, Any]:
        rate = self.limits.rate_limit
        return {
            "global_limit": self.global_limit,
            "executing": self.use.executing,
            "rate_limit": None if rate is None else rate.describe(),
            "rate_window_used": None if rate is None else self.use.started,
            "partition": None
            if self.limits.partition is None
            else self.limits.partition.describe(),
            "partitions": self.use.partitions if self.limits.partition is not None else None,
            "busiest_partitions": self.use.busiest,
            "slots": self.use.slots if self.limits.slotted else None,
        }


def node_limits(live: Sequence[NodeRow], name: str) -> Limits | None:
    """The limits the live nodes serving `name` claim under (the first that reports any)."""
    for node in sorted(live, key=lambda n: n.name):
        raw = node.queues.get(name, {}).get("limits")
        if raw:
            return _limits(raw)
    return None


def _limits(raw: Mapping[str, Any]) -> Limits:
    rate, partition = raw.get("rate_limit"), raw.get("partition")
    return Limits(
        global_limit=raw.get("global_limit"),
        rate_limit=None if rate is None else RateLimit(rate["allowed"], rate["period_s"]),
        partition=None
        if partition is None
        else Partition(tuple(partition["fields"]), tuple(partition["keys"])),
    )


async def queue_limits(
    conn: Conn, live: Sequence[NodeRow], names: Sequence[str], global_overrides: Mapping[str, int]
) -> dict[str, QueueLimits]:
    """Each queue with cluster-wide limits (reported by a node, or persisted), with its use."""
    found: dict[str, QueueLimits] = {}
    for name in names:
        limits = node_limits(live, name)
        if limits is None and name in global_overrides:
            limits = Limits(global_limit=global_overrides[name])
        if limits is None:
            continue
        use = await _queries.limit_status(conn, queue=name, limits=limits, top=BUSIEST)
        found[name] = QueueLimits(name, limits, use)
    return found


def render(limited: Sequence[QueueLimits], table: Any) -> list[str]:
    """The LIMITS section, with each partitioned queue's busiest partitions."""
    if not limited:
        return []
    rows = []
    for q in limited:
        rate = q.limits.rate_limit
        rows.append(
            (
                q.name,
                q.global_limit,
                q.use.executing,
                None if rate is None else f"{rate.allowed}/{rate.period_s:g}s",
                None if rate is None else f"{q.use.started}/{rate.allowed}",
                _partition(q.limits.partition),
                q.use.partitions if q.limits.partition is not None else None,
            )
        )
    headers = ("QUEUE", "GLOBAL", "EXECUTING", "RATE", "WINDOW USE", "PARTITION", "PARTITIONS")
    lines = [
        "",
        "LIMITS (across every node; per partition when partitioned)",
        *table(headers, rows),
    ]
    for q in limited:
        if q.limits.slotted and q.use.slots:
            held = ", ".join(f"{node} {n}" for node, n in q.use.slots.items())
            lines.append(f"slots of {q.name} held by node: {held}")
        if q.use.busiest:
            lines.append(f"busiest partitions of {q.name}:")
            for part in q.use.busiest:
                lines.append(
                    f"  {json.dumps(part['partition'], sort_keys=True)}: "
                    f"{part['executing']} executing, {part['available']} waiting, "
                    f"{part['started']} started in the window"
                )
    return lines


def _partition(partition: Partition | None) -> str | None:
    if partition is None:
        return None
    return "+".join([*partition.fields, *(f"args.{k}" for k in partition.keys)])
