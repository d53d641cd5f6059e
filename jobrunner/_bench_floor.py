"""The bench's floor: what the machine allows a queue with no bookkeeping, in the same minutes.

A bare asyncpg queue on one connection: a table of (id, state, args), a loop that claims a
batch with `FOR UPDATE SKIP LOCKED`, runs each job as a task (a no-op that decodes its args)
and acks the batch in the statement that claims the next one; and single inserts into that
table, one at a time on one connection. No pool, logs, leases, attempts, errors or retries:
every jobrunner figure is also shown as a fraction of these.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import asyncpg

from jobrunner._bench_harness import Context, Metrics, percentile

CREATE = """
CREATE TABLE IF NOT EXISTS bench_floor (
    id bigserial PRIMARY KEY,
    state smallint NOT NULL DEFAULT 0,
    args jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS bench_floor_available ON bench_floor (id) WHERE state = 0;
TRUNCATE bench_floor RESTART IDENTITY;
"""
FILL = """
INSERT INTO bench_floor (args) SELECT jsonb_build_object('n', g) FROM generate_series(1, $1) g
"""
ACK_AND_CLAIM = """
WITH acked AS (
    UPDATE bench_floor SET state = 2 WHERE id = ANY($1::bigint[])
), claimed AS (
    SELECT id FROM bench_floor WHERE state = 0 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED
)
UPDATE bench_floor f SET state = 1 FROM claimed WHERE f.id = claimed.id RETURNING f.id, f.args
"""
INSERT = "INSERT INTO bench_floor (args) VALUES ($1::jsonb)"
INSERT_AND_NOTIFY = """
WITH inserted AS (INSERT INTO bench_floor (args) VALUES ($1::jsonb) RETURNING id)
SELECT pg_notify('bench_floor', '') FROM inserted
"""


async def _noop(args: str) -> None:
    json.loads(args)


async def burn_down(conn: asyncpg.Connection, jobs: int, concurrency: int) -> float:
    """`jobs` no-op jobs through the bare loop at `concurrency`; jobs/s."""
    await conn.execute(CREATE)
    await conn.execute(FILL, jobs)
    await conn.execute("VACUUM ANALYZE bench_floor")
    acks: list[int] = []
    done = 0
    started = time.perf_counter()
    while True:
        rows = await conn.fetch(ACK_AND_CLAIM, acks, concurrency)
        done += len(acks)
        if not rows:
            break
        tasks = [asyncio.create_task(_noop(row["args"])) for row in rows]
        await asyncio.gather(*tasks)
        acks = [row["id"] for row in rows]
    elapsed = time.perf_counter() - started
    if done != jobs:
        raise RuntimeError(f"floor: {done} of {jobs} jobs acked")
    return jobs / elapsed


async def insert_rate(conn: asyncpg.Connection, seconds: float) -> float:
    """Single inserts, one at a time on one connection, for `seconds`; inserts/s."""
    await conn.execute(CREATE)
    count, started = 0, time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        await conn.fetch(INSERT, json.dumps({"n": count}))
        count += 1
    return count / (time.perf_counter() - started)


async def wake_latency(ctx: Context) -> Metrics:
    """An idle bare consumer (LISTEN, then a claim of up to 10 jobs per notification) on one
    connection; single jobs inserted (with their NOTIFY, in one statement) `gap` apart on
    another; from the insert's return to the consumer's claim returning it, in ms."""
    count, gap = ctx.sizes.latency_jobs, ctx.sizes.latency_gap_s
    consumer: Any = await asyncpg.connect(ctx.dsn)
    producer: Any = await asyncpg.connect(ctx.dsn)
    claimed: dict[int, float] = {}
    committed: dict[int, float] = {}
    wake = asyncio.Event()
    try:
        await producer.execute(CREATE)
        await consumer.add_listener("bench_floor", lambda *_: wake.set())

        async def consume() -> None:
            while True:
                await wake.wait()
                wake.clear()
                for row in await consumer.fetch(ACK_AND_CLAIM, [], 10):
                    claimed[json.loads(row["args"])["n"]] = time.time()

        consuming = asyncio.create_task(consume())
        for n in range(count):
            await producer.fetch(INSERT_AND_NOTIFY, json.dumps({"n": n}))
            committed[n] = time.time()
            await asyncio.sleep(gap)
        consuming.cancel()
        await asyncio.gather(consuming, return_exceptions=True)
        await producer.execute("DROP TABLE bench_floor")
    finally:
        await consumer.close()
        await producer.close()
    latencies = sorted((claimed[n] - committed[n]) * 1000 for n in committed if n in claimed)
    if len(latencies) < count:
        raise RuntimeError(f"floor: {len(latencies)} of {count} jobs claimed")
    return {
        "floor_wake_p50_ms": percentile(latencies, 50),
        "floor_wake_p99_ms": percentile(latencies, 99),
    }


async def burn_down_alone(ctx: Context, concurrency: int) -> float:
    """The floor's burn-down on a connection of its own (run just before a case's, to pair)."""
    conn: Any = await asyncpg.connect(ctx.dsn)
    try:
        return await burn_down(conn, ctx.sizes.burn_jobs, concurrency)
    finally:
        await conn.close()


async def insert_rate_alone(ctx: Context) -> float:
    conn: Any = await asyncpg.connect(ctx.dsn)
    try:
        return await insert_rate(conn, ctx.sizes.insert_s)
    finally:
        await conn.close()


async def floor(ctx: Context) -> Metrics:
    """The floor's burn-down at concurrency 10 and 50, and its single-insert rate."""
    conn: Any = await asyncpg.connect(ctx.dsn)
    try:
        found = {
            "floor_c10": await burn_down(conn, ctx.sizes.burn_jobs, 10),
            "floor_c50": await burn_down(conn, ctx.sizes.burn_jobs, 50),
            "floor_insert_per_s": await insert_rate(conn, ctx.sizes.insert_s),
        }
        await conn.execute("DROP TABLE bench_floor")
    finally:
        await conn.close()
    return {**found, **await wake_latency(ctx)}
