"""The bench's soak: a daemon that runs jobs inserted at a steady rate for a long while, with
the pruner on (and optionally a large history of finished jobs it must leave alone).

Every interval, read from the database's clock: the jobs completed in it (throughput), their
queue time from being due to their attempt (the jobs arrive as a batch every 50 ms, so this
is the wake latency plus the wait behind the rest of the batch), and the jobs table's size
with its indexes, its live and dead rows and how often autovacuum has run on it. Flat means
the last interval is as fast, as quick and as large as the first.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from jobrunner import _bench_workers
from jobrunner._bench_harness import Context, Daemon, Metrics, checkpoint, reset
from jobrunner.client import connect

# A history the pruner must keep: discarded jobs an hour old, kept 30 days (below).
HISTORY = """
INSERT INTO jobrunner_jobs (state, queue, worker, args, attempt, inserted_at, scheduled_at,
                            attempted_at, discarded_at, attempted_by)
SELECT 'discarded', 'bench', 'bench.noop', jsonb_build_object('n', g), 1,
       now() - interval '1 hour', now() - interval '1 hour', now() - interval '1 hour',
       now() - interval '1 hour', ARRAY['bench-history']
FROM generate_series(1, $1) AS g
"""
WINDOW = """
SELECT count(*) AS done,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM attempted_at - scheduled_at))
           AS p50_s,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM attempted_at - scheduled_at))
           AS p99_s
FROM jobrunner_jobs
WHERE state = 'completed' AND completed_at >= $1 AND completed_at < $2
"""
TABLE = """
SELECT pg_total_relation_size('jobrunner_jobs') AS bytes, n_live_tup, n_dead_tup,
       autovacuum_count, clock_timestamp() AS now, current_setting('autovacuum') AS autovacuum
FROM pg_stat_user_tables WHERE relname = 'jobrunner_jobs'
"""
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")


def parse_duration(text: str) -> float:
    """`90`, `90s`, `10m` or `1h` in seconds; ValueError otherwise."""
    found = _DURATION.match(text)
    if found is None or float(found.group(1)) <= 0:
        raise ValueError(f"a duration is like 30s, 10m or 1h, got {text!r}")
    return float(found.group(1)) * {"s": 1, "m": 60, "h": 3600}[found.group(2) or "s"]


@dataclass(frozen=True, slots=True)
class Soak:
    """The soak's shape: how long, how many jobs a second, how often a row is reported."""

    duration_s: float
    rate: float = 1_000.0
    interval_s: float = 60.0
    history: int = 0
    concurrency: int = 10


def _config(soak: Soak) -> str:
    """The daemon's settings: finished jobs pruned two intervals after they end, every tenth
    of an interval (at most every 10 s); the history (discarded) kept."""
    prune_every = min(10.0, max(0.1, soak.interval_s / 10))
    return (
        f"prune_interval_s = {prune_every}\n"
        f"prune_max_age_s = {2 * soak.interval_s}\n"
        "prune_max_age_by_state = { discarded = 2592000 }\n"
    )


async def soak(ctx: Context, shape: Soak) -> tuple[Metrics, list[dict[str, Any]]]:
    """Run the soak; its summary metrics and one row per interval."""
    config = ctx.workdir / "soak.toml"
    config.write_text(_config(shape))
    rows: list[dict[str, Any]] = []
    async with connect(ctx.dsn) as client, client.pool.acquire() as conn:
        await reset(conn)
        if shape.history:
            await conn.execute(HISTORY, shape.history, timeout=3600)
            await conn.execute("VACUUM ANALYZE jobrunner_jobs", timeout=3600)
            await checkpoint(conn)
        env = {"JOBRUNNER_CONFIG": str(config)}
        async with Daemon(ctx, shape.concurrency, env) as daemon:
            stop = asyncio.Event()
            inserter = asyncio.create_task(_insert_steadily(client, shape.rate, stop))
            try:
                start = (await conn.fetchrow(TABLE))["now"]
                cpu = daemon.cpu_s()
                deadline = time.monotonic() + shape.duration_s
                while time.monotonic() < deadline - shape.interval_s / 2:
                    await asyncio.sleep(min(shape.interval_s, deadline - time.monotonic()))
                    daemon.check_alive()
                    row, start = await _interval(conn, start, len(rows) + 1)
                    cpu, row["cpu_us_per_job"] = _cpu_per_job(daemon, cpu, row)
                    rows.append(row)
            finally:
                stop.set()
                await inserter
    return _summary(rows), rows


async def _interval(
    conn: asyncpg.Connection, start: Any, number: int
) -> tuple[dict[str, Any], Any]:
    table = await conn.fetchrow(TABLE)
    end = table["now"]
    done = await conn.fetchrow(WINDOW, start, end)
    seconds = (end - start).total_seconds()
    row = {
        "interval": number,
        "seconds": seconds,
        "jobs_per_s": done["done"] / seconds,
        "queue_p50_ms": (done["p50_s"] or 0.0) * 1000,
        "queue_p99_ms": (done["p99_s"] or 0.0) * 1000,
        "table_mb": table["bytes"] / 1e6,
        "live_rows": table["n_live_tup"],
        "dead_rows": table["n_dead_tup"],
        "autovacuums": table["autovacuum_count"],
        "autovacuum": table["autovacuum"],  # the server's setting: off, nothing reclaims
    }
    return row, end


def _cpu_per_job(daemon: Daemon, before: float, row: dict[str, Any]) -> tuple[float, float]:
    now = daemon.cpu_s()
    jobs = row["jobs_per_s"] * row["seconds"]
    return now, (now - before) / jobs * 1e6 if jobs else float("nan")


async def _insert_steadily(client: Any, rate: float, stop: asyncio.Event) -> None:
    """`rate` jobs a second, as a batch every 50 ms, until `stop`."""
    tick, sent, started = 0.05, 0, time.monotonic()
    while not stop.is_set():
        due = int((time.monotonic() - started) * rate) - sent
        if due > 0:
            await client.insert_all([_bench_workers.noop.new({"n": sent + i}) for i in range(due)])
            sent += due
        try:
            await asyncio.wait_for(stop.wait(), tick)
        except TimeoutError:
            pass


def _summary(rows: list[dict[str, Any]]) -> Metrics:
    if not rows:
        raise RuntimeError("the soak ended before its first interval")
    first, last = rows[0], rows[-1]
    return {
        "soak_first_per_s": first["jobs_per_s"],
        "soak_last_per_s": last["jobs_per_s"],
        "soak_last_ratio": last["jobs_per_s"] / first["jobs_per_s"] if first["jobs_per_s"] else 0,
        "soak_first_p50_ms": first["queue_p50_ms"],
        "soak_last_p50_ms": last["queue_p50_ms"],
        "soak_p50_ratio": last["queue_p50_ms"] / first["queue_p50_ms"]
        if first["queue_p50_ms"]
        else 0,
        "soak_last_p99_ms": last["queue_p99_ms"],
        "soak_first_cpu": first["cpu_us_per_job"],
        "soak_last_cpu": last["cpu_us_per_job"],
        "soak_first_mb": first["table_mb"],
        "soak_last_mb": last["table_mb"],
        "soak_mb_ratio": last["table_mb"] / first["table_mb"] if first["table_mb"] else 0,
        "soak_growth_mb_min": (last["table_mb"] - first["table_mb"])
        / max(sum(r["seconds"] for r in rows[1:]) / 60, 1e-9),
    }
