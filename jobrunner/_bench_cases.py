"""The benchmark's cases: each runs once against a fresh table and returns its metrics."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from jobrunner import _bench_triggers, _bench_workers
from jobrunner._bench_harness import (
    Context,
    Daemon,
    Metrics,
    checkpoint,
    free_port,
    insert_noops,
    percentile,
    reset,
    scrape,
    wait_drained,
)
from jobrunner.client import connect

if TYPE_CHECKING:
    from jobrunner.client import Client

SPAN = """
SELECT count(*) AS done,
       extract(epoch FROM max(completed_at) - min(attempted_at))::float8 AS span_s
FROM jobrunner_jobs
WHERE id > $1 AND state = 'completed'
"""
# Jobs waiting for a bulk action (the bulk case): scheduled an hour ahead, so none runs.
BULK_PRELOAD = """
INSERT INTO jobrunner_jobs (state, queue, worker, args, scheduled_at)
SELECT 'scheduled', 'bench', 'bench.noop', jsonb_build_object('n', g, 'batch', 'bulk'),
       now() + interval '1 hour'
FROM generate_series(1, $1) AS g
"""
DONE = "SELECT count(*) FROM jobrunner_jobs WHERE id > $1 AND state = 'completed'"
# Finished jobs as a table that has run for a while holds them (the scale case).
PRELOAD = """
INSERT INTO jobrunner_jobs (state, queue, worker, args, attempt, inserted_at, scheduled_at,
                            attempted_at, completed_at, attempted_by)
SELECT 'completed', 'bench', 'bench.noop', jsonb_build_object('n', g), 1,
       now() - interval '1 hour', now() - interval '1 hour', now() - interval '1 hour',
       now() - interval '1 hour', ARRAY['bench-preload']
FROM generate_series(1, $1) AS g
"""


# Long: one case read top to bottom (setup, run, checks) under a docstring of its options.
async def burn_down(
    ctx: Context,
    concurrency: int,
    *,
    keep_rows: bool = False,
    sync: bool = False,
    metrics: bool = False,
    options: str = "",
    partitions: int = 0,
    viewers: int = 0,
    through: str | None = None,
    env: dict[str, str] | None = None,
) -> Metrics:
    """A burst of N no-op jobs for an idle daemon: first claim to last completion.

    With `sync`, the no-op is a plain `def`, run in as many threads as the concurrency: the
    cost of handing each job to a thread and back.

    The jobs are inserted with `insert_all` inside a transaction, so that they appear
    together at its commit (which wakes the daemon) and the bench's own work is done by
    then. Both ends are the database's clock (attempted_at, completed_at): the daemon's
    start-up is not counted and the poll interval does not blur the result. The daemon's
    CPU time per job is a figure that other load on the machine disturbs far less.

    With `metrics`, the daemon serves /metrics and the bench scrapes it every second
    throughout (fifteen times as often as Prometheus's default).

    `options` are the queue's limits in `--queues` syntax (`:global_limit=10`), and
    `partitions` spreads the jobs over that many values of args.p.

    With `viewers`, the daemon serves the dashboard (`--web`) and that many open pages poll
    its overview and its jobs list once a second each while the jobs run.

    With `through` (a pooler's URL) and `env` (its settings), the daemon reaches the
    database through it; the bench itself inserts and measures directly.
    """
    jobs = ctx.sizes.burn_jobs
    port = free_port() if metrics else 0
    env = {**(env or {}), **({"JOBRUNNER_HTTP_LISTEN": f"127.0.0.1:{port}"} if metrics else {})}
    scrapes: list[int] = []
    async with connect(ctx.dsn) as client, client.pool.acquire() as conn:
        if keep_rows:
            await checkpoint(conn)
        else:
            await reset(conn)
        floor = await conn.fetchval("SELECT coalesce(max(id), 0) FROM jobrunner_jobs")
        threads = concurrency if sync else None
        web = f"127.0.0.1:{_free_port()}" if viewers else None
        async with Daemon(
            ctx, concurrency, env, threads=threads, options=options, web=web, dsn=through
        ) as daemon:
            await asyncio.sleep(0.3)  # idle: start-up fetches and heartbeats are done
            scraper = asyncio.create_task(scrape(port, 1.0, scrapes)) if metrics else None
            pollers = [asyncio.create_task(_view(f"http://{web}/")) for _ in range(viewers)]
            try:
                cpu_before = daemon.cpu_s()
                async with conn.transaction():
                    await insert_noops(client, jobs, conn=conn, sync=sync, partitions=partitions)
                await wait_drained(conn, daemon, timeout_s=60 + jobs / 100)
                cpu_s = daemon.cpu_s() - cpu_before
            finally:
                background = [*pollers, *([scraper] if scraper is not None else [])]
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
        if metrics and not scrapes:
            raise RuntimeError("no /metrics scrape succeeded")
        row = await conn.fetchrow(SPAN, floor)
    if row["done"] != jobs:
        raise RuntimeError(f"{row['done']} of {jobs} jobs completed")
    return {
        "jobs_per_s": jobs / row["span_s"],
        "seconds": row["span_s"],
        "cpu_us_per_job": cpu_s / jobs * 1e6,
    }


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _view(base: str) -> None:
    """One open dashboard page: its overview and jobs fragments, once a second, for ever."""
    import httpx

    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        while True:
            for path in ("partial/overview", "partial/jobs"):
                try:
                    await http.get(path)
                except httpx.TransportError:
                    pass  # not listening yet
            await asyncio.sleep(1.0)


async def wake_latency(ctx: Context) -> Metrics:
    """An idle daemon; single jobs inserted `gap` apart; commit to job body start, in ms."""
    stamps = ctx.workdir / "stamps.txt"
    stamps.write_text("")
    count, gap = ctx.sizes.latency_jobs, ctx.sizes.latency_gap_s
    committed: dict[int, float] = {}
    async with connect(ctx.dsn) as client:
        async with client.pool.acquire() as conn:
            await reset(conn)
        async with Daemon(ctx, 10, {_bench_workers.STAMPS_ENV: str(stamps)}):
            await asyncio.sleep(0.5)  # idle: start-up fetches and heartbeats are done
            for n in range(count):
                await client.insert(_bench_workers.stamp.new({"n": n}))
                committed[n] = time.time()
                await asyncio.sleep(gap)
            started = await _read_stamps(stamps, count)
    latencies = sorted((started[n] - committed[n]) * 1000 for n in committed)
    return {
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": latencies[-1],
    }


async def _read_stamps(path: Path, count: int, timeout_s: float = 10.0) -> dict[int, float]:
    deadline = time.monotonic() + timeout_s
    while True:
        lines = (await asyncio.to_thread(path.read_text)).splitlines()
        if len(lines) >= count or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    started = {int(n): float(t) for n, t in (line.split() for line in lines)}
    if len(started) < count:
        raise RuntimeError(f"only {len(started)} of {count} jobs started")
    return started


async def insert_rate(ctx: Context) -> Metrics:
    """Sequential `client.insert` calls for a while (one at a time, through the pool)."""
    async with connect(ctx.dsn) as client:
        async with client.pool.acquire() as conn:
            await reset(conn)
        count, started = 0, time.perf_counter()
        deadline = started + ctx.sizes.insert_s
        while time.perf_counter() < deadline:
            await client.insert(_bench_workers.noop.new({"n": count}))
            count += 1
        elapsed = time.perf_counter() - started
    return {"per_s": count / elapsed}


async def concurrent_insert_rate(ctx: Context, tasks: int = 50) -> Metrics:
    """`tasks` tasks calling `client.insert` in a loop for a while, as a web app's requests
    would, on one client (its pool on default settings)."""
    async with connect(ctx.dsn) as client:
        async with client.pool.acquire() as conn:
            await reset(conn)
        count = 0
        deadline = time.perf_counter() + ctx.sizes.insert_s

        async def inserting() -> None:
            nonlocal count
            while time.perf_counter() < deadline:
                await client.insert(_bench_workers.noop.new({"n": count}))
                count += 1

        started = time.perf_counter()
        await asyncio.gather(*(inserting() for _ in range(tasks)))
        elapsed = time.perf_counter() - started
    return {"per_s": count / elapsed}


async def insert_all_time(ctx: Context) -> Metrics:
    """One `insert_all` of N jobs: the call only, the NewJob list is built before."""
    async with connect(ctx.dsn) as client:
        async with client.pool.acquire() as conn:
            await reset(conn)
        batch = [_bench_workers.noop.new({"n": n}) for n in range(ctx.sizes.insert_all_jobs)]
        started = time.perf_counter()
        inserted = await client.insert_all(batch)
        elapsed = time.perf_counter() - started
    if len(inserted) != len(batch):
        raise RuntimeError(f"{len(inserted)} of {len(batch)} jobs inserted")
    return {"seconds": elapsed}


def sync_insert_rate(ctx: Context) -> Metrics:
    """Sequential `SyncClient.insert` calls for a while (one at a time, through its pool)."""
    from jobrunner.sync_client import connect_sync

    with connect_sync(ctx.dsn) as client:
        client.reset_tables()
        count, started = 0, time.perf_counter()
        deadline = started + ctx.sizes.insert_s
        while time.perf_counter() < deadline:
            client.insert(_bench_workers.noop.new({"n": count}))
            count += 1
        elapsed = time.perf_counter() - started
    return {"per_s": count / elapsed}


def sync_insert_all_time(ctx: Context) -> Metrics:
    """One `SyncClient.insert_all` of N jobs: the call only, the NewJob list is built before."""
    from jobrunner.sync_client import connect_sync

    with connect_sync(ctx.dsn) as client:
        client.reset_tables()
        batch = [_bench_workers.noop.new({"n": n}) for n in range(ctx.sizes.insert_all_jobs)]
        started = time.perf_counter()
        inserted = client.insert_all(batch)
        elapsed = time.perf_counter() - started
    if len(inserted) != len(batch):
        raise RuntimeError(f"{len(inserted)} of {len(batch)} jobs inserted")
    return {"seconds": elapsed}


async def memory(ctx: Context, concurrency: int = 10) -> Metrics:
    """The daemon's peak RSS while N jobs wait: it must hold only what it runs."""
    async with connect(ctx.dsn) as client, client.pool.acquire() as conn:
        await reset(conn)
        await insert_noops(client, ctx.sizes.memory_jobs)
        await checkpoint(conn)
        async with Daemon(ctx, concurrency) as daemon:
            ready_mb = daemon.rss_mb("VmRSS")
            await asyncio.sleep(ctx.sizes.memory_run_s)
            peak_mb = daemon.rss_mb("VmHWM")
        done = await conn.fetchval(DONE, 0)
    return {"peak_rss_mb": peak_mb, "ready_rss_mb": ready_mb, "jobs_done": float(done)}


async def preload(ctx: Context) -> float:
    """Fill the table with finished jobs (once, before the scale runs); returns seconds."""
    started = time.perf_counter()
    conn = await asyncpg.connect(ctx.dsn)
    try:
        await reset(conn)
        await conn.execute(PRELOAD, ctx.sizes.scale_rows, timeout=600)
        await conn.execute("VACUUM ANALYZE jobrunner_jobs", timeout=600)
        await checkpoint(conn)
    finally:
        await conn.close()
    return time.perf_counter() - started


async def bulk_actions(ctx: Context) -> Metrics:
    """`cancel_jobs` then `retry_jobs` of N jobs matched by args, while another task inserts
    jobs one at a time: each action's time, and the slowest concurrent insert (what a bulk
    action's row locks cost everyone else)."""
    async with connect(ctx.dsn) as client:
        async with client.pool.acquire() as conn:
            await reset(conn)
            await conn.execute(BULK_PRELOAD, ctx.sizes.bulk_jobs, timeout=600)
            await conn.execute("VACUUM ANALYZE jobrunner_jobs", timeout=600)
            await checkpoint(conn)
        found: Metrics = {}
        for action in ("cancel", "retry"):
            stop = asyncio.Event()
            inserter = asyncio.create_task(_insert_until(client, stop))
            started = time.perf_counter()
            if action == "cancel":
                changed = await client.cancel_jobs(args={"batch": "bulk"})
            else:
                changed = await client.retry_jobs(state="cancelled", args={"batch": "bulk"})
            elapsed = time.perf_counter() - started
            stop.set()
            latencies = await inserter
            if len(changed) != ctx.sizes.bulk_jobs:
                raise RuntimeError(f"{action}: {len(changed)} of {ctx.sizes.bulk_jobs} jobs")
            found[f"{action}_s"] = elapsed
            found[f"{action}_insert_max_ms"] = max(latencies) * 1000
            found[f"{action}_insert_p50_ms"] = percentile(latencies, 50) * 1000
    return found


async def _insert_until(client: Client, stop: asyncio.Event) -> list[float]:
    """Insert jobs one at a time until `stop`; each insert's seconds."""
    latencies: list[float] = []
    while not stop.is_set() or not latencies:
        started = time.perf_counter()
        await client.insert(_bench_workers.noop.new({"concurrent": True}, schedule_in=3600))
        latencies.append(time.perf_counter() - started)
    return latencies


# $1 the trigger's name: its first completed scan, and the jobs enqueued so far.
FIRST_SCAN = """
SELECT extract(epoch FROM completed_at - attempted_at)::float8 AS seconds,
       (SELECT count(*) FROM jobrunner_jobs WHERE worker = $1) AS jobs
FROM jobrunner_jobs
WHERE worker = $1 || ':scan' AND state = 'completed'
ORDER BY id LIMIT 1
"""


async def trigger_scan(ctx: Context) -> Metrics:
    """A per-second scheduled trigger over N rows of which M match (spread evenly): its
    first scan's time to enqueue the M jobs (database clock, from the scan job's start to
    its end), the time until every record is done, and the daemon's peak RSS."""
    rows, matching = ctx.sizes.trigger_rows, ctx.sizes.trigger_matching
    async with connect(ctx.dsn) as client, client.pool.acquire() as conn:
        await reset(conn)
        await conn.execute(_bench_triggers.TABLE)
        await conn.execute(_bench_triggers.FILL, rows, rows // matching, timeout=600)
        await conn.execute("VACUUM ANALYZE bench_records", timeout=600)
        await checkpoint(conn)
        async with Daemon(ctx, 10, apps=(_bench_triggers.__name__,)) as daemon:
            ready_mb = daemon.rss_mb("VmRSS")
            started = time.perf_counter()
            first = await _until(conn, FIRST_SCAN, _bench_triggers.NAME, timeout_s=300)
            await _until(
                conn, "SELECT 1 WHERE NOT EXISTS (SELECT FROM bench_records "
                "WHERE status = 'pending')", timeout_s=600,
            )  # fmt: skip
            done_s = time.perf_counter() - started
            peak_mb = daemon.rss_mb("VmHWM")
        await conn.execute("DROP TABLE bench_records")
    return {
        "scan_s": first["seconds"],
        "scan_jobs": float(first["jobs"]),
        "all_done_s": done_s,
        "peak_rss_mb": peak_mb,
        "ready_rss_mb": ready_mb,
    }


async def _until(
    conn: asyncpg.Connection, query: str, *args: object, timeout_s: float
) -> asyncpg.Record:
    """The first row of `query` once it returns one, polling to a deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        row = await conn.fetchrow(query, *args)
        if row is not None:
            return row
        if time.monotonic() > deadline:
            raise RuntimeError(f"no row within {timeout_s:.0f}s: {query.strip()[:60]}")
        await asyncio.sleep(0.05)
