"""The slots of a global limit (migration 12), asked for by simulated nodes on connections of
their own, racing: whatever the interleaving, the slots held by live nodes plus the loose
executing jobs never exceed the limit, a node never holds fewer than it keeps, and busy
nodes converge on their fair share."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import asyncpg

from jobrunner.db import connection as _db
from jobrunner.db import queries as _queries
from tests.conftest import SCHEMA

QUEUE = "slotted"
LIMIT = 7  # the global limit
LOCAL = 5  # each node's own limit


@dataclass
class Node:
    """A node as the producer sees itself: the slots it holds and the jobs it runs."""

    name: str
    conn: asyncpg.Connection
    slots: int = 0
    running: int = 0
    cap: int | None = None

    async def ask(self, have: int, keep: int) -> _queries.Slots:
        _, _, slots = await _queries.ack_and_claim_slots(
            self.conn,
            self.name,
            [],
            queue=QUEUE,
            demand=0,
            claim=None,
            started=0,
            global_limit=LIMIT,
            limit=LOCAL,
            have=have,
            keep=keep,
        )
        return slots


async def _nodes(dsn: str, db: asyncpg.Connection, count: int) -> list[Node]:
    nodes = []
    for i in range(count):
        name = f"slot-node-{i}"
        await db.execute(
            "INSERT INTO jobrunner_nodes (name, host, pid, expires_at)"
            " VALUES ($1, 'h', $2, now() + interval '1 hour')",
            name,
            i,
        )
        nodes.append(Node(name, await _db.connect(dsn, _db.Reach(schema=SCHEMA))))
    return nodes


async def _used(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT jobrunner_limit_used($1, $2)", QUEUE, LIMIT))


async def test_racing_asks_never_grant_more_than_the_limit(
    dsn: str, db: asyncpg.Connection
) -> None:
    rng = random.Random(12)
    nodes = await _nodes(dsn, db, 4)
    granted_over: list[str] = []

    async def act(node: Node) -> None:
        for _ in range(60):
            # the node runs some of its slots, wants some jobs, keeps at least what runs
            node.running = rng.randint(0, min(node.slots, LOCAL))
            have = rng.randint(node.running, LOCAL + 3)
            keep = rng.randint(node.running, node.slots)
            node.slots = keep  # until the reply, as the producer does
            slots = await node.ask(have, keep)
            if slots.held < keep:
                granted_over.append(f"{node.name} kept {keep}, got {slots.held}")
            node.slots, node.cap = slots.held, slots.cap
            used = await _used(node.conn)
            if used > LIMIT:
                granted_over.append(f"{used} slots used of {LIMIT}")

    try:
        await asyncio.gather(*(act(node) for node in nodes))
    finally:
        for node in nodes:
            await node.conn.close()
    assert granted_over == []
    held = await db.fetchval("SELECT sum(held) FROM jobrunner_queue_slots WHERE queue = $1", QUEUE)
    assert held == sum(node.slots for node in nodes) <= LIMIT


async def test_busy_nodes_converge_on_their_fair_share_and_a_gone_node_frees_its_slots(
    dsn: str, db: asyncpg.Connection
) -> None:
    nodes = await _nodes(dsn, db, 3)
    try:
        first = nodes[0]
        first.slots = (await first.ask(LOCAL, 0)).held
        assert first.slots == LOCAL  # alone: all it can run
        for _ in range(4):  # everyone busy; each gives back what is over its share as jobs end
            for node in nodes:
                keep = node.slots if node.cap is None else min(node.slots, node.cap)
                slots = await node.ask(LOCAL, keep)
                node.slots, node.cap = slots.held, slots.cap
        shares = sorted(node.slots for node in nodes)
        assert sum(shares) == LIMIT and shares[-1] - shares[0] <= 1, shares
        assert all(node.cap is not None for node in nodes)

        # A node whose row of jobrunner_nodes goes: its slots count no more, its executing
        # jobs count instead.
        gone = nodes[2]
        await db.execute("DELETE FROM jobrunner_nodes WHERE name = $1", gone.name)
        await db.execute(
            "INSERT INTO jobrunner_jobs (queue, worker, state, attempted_by, attempt)"
            " VALUES ($1, 'w', 'executing', ARRAY[$2], 1)",
            QUEUE,
            gone.name,
        )
        assert await _used(db) == LIMIT - gone.slots + 1
        slots = await nodes[0].ask(LOCAL, nodes[0].slots)
        assert slots.held == min(LOCAL, LIMIT - nodes[1].slots - 1)
    finally:
        for node in nodes:
            await node.conn.close()
