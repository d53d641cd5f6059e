"""The benchmark's cases: each runs once against a fresh table and returns its metrics."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import asyncpg

from jobrunner import _bench_workers
from jobrunner.client import connect
from jobrunner.db import migrate as _migrate

if TYPE_CHECKING:
    from typing import Self

    from jobrunner.client import Client

Metrics = dict[str, float]

RESET = "TRUNCATE jobrunner_jobs, jobrunner_nodes RESTART IDENTITY"
PENDING = """
SELECT (SELECT count(*) FROM jobrunner_jobs WHERE state = 'available' AND queue = $1)
     + (SELECT count(*) FROM jobrunner_jobs WHERE state = 'executing')
"""
SPAN = """
SELECT count(*) AS done,
       extract(epoch FROM max(completed_at) - min(attempted_at))::float8 AS span_s
FROM jobrunner_jobs
WHERE id > $1 AND state = 'completed'
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


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big each case is; `--quick` shrinks them."""

    burn_jobs: int = 10_000
    latency_jobs: int = 200
    latency_gap_s: float = 0.02
    insert_s: float = 2.0
    insert_all_jobs: int = 10_000
    memory_jobs: int = 100_000
    memory_run_s: float = 3.0
    scale_rows: int = 1_000_000


QUICK = Sizes(
    burn_jobs=2_000,
    latency_jobs=50,
    insert_s=0.5,
    insert_all_jobs=10_000,
    memory_jobs=20_000,
    memory_run_s=1.0,
    scale_rows=100_000,
)


@dataclass(slots=True)
class Context:
    """What every case needs: the benchmark database and where daemons log."""

    dsn: str
    workdir: Path
    sizes: Sizes
    daemons: int = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / "daemon.log"


async def prepare_database(dsn: str) -> None:
    """Migrate the (new, empty) benchmark database."""
    conn = await asyncpg.connect(dsn)
    try:
        await _migrate.migrate(conn)
    finally:
        await conn.close()


async def reset(conn: asyncpg.Connection) -> None:
    """An empty jobs table, and a checkpoint so that one does not land inside a timing."""
    await conn.execute(RESET)
    await checkpoint(conn)


async def checkpoint(conn: asyncpg.Connection) -> None:
    try:
        await conn.execute("CHECKPOINT")
    except asyncpg.InsufficientPrivilegeError:
        pass


def daemon_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment without JOBRUNNER_* settings, so the daemon runs on defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBRUNNER_")}
    return {**env, **(extra or {})}


class Daemon:
    """`jobrunner start --queues bench:N` in a subprocess, JSON logs appended to a file."""

    def __init__(
        self,
        ctx: Context,
        concurrency: int,
        env: dict[str, str] | None = None,
        threads: int | None = None,
    ) -> None:
        ctx.daemons += 1
        self.node = f"bench-{os.getpid()}-{ctx.daemons}"
        self._ctx = ctx
        self._cmd = [
            sys.executable,
            "-m",
            "jobrunner",
            "start",
            "--dsn",
            ctx.dsn,
            "--queues",
            f"{_bench_workers.QUEUE}:{concurrency}",
            "--app",
            _bench_workers.__name__,
            "--node",
            self.node,
            *([] if threads is None else ["--threads", str(threads)]),
        ]
        self._env = daemon_env(env)
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Self:
        with self._ctx.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self._cmd,
                cwd=self._ctx.workdir,
                env=self._env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
            )
        try:
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _wait_ready(self, timeout_s: float = 30.0) -> None:
        conn = await asyncpg.connect(self._ctx.dsn)
        try:
            deadline = time.monotonic() + timeout_s
            while not await conn.fetchval(
                "SELECT 1 FROM jobrunner_nodes WHERE name = $1", self.node
            ):
                self.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"daemon not ready in {timeout_s}s; see {self._ctx.log_path}"
                    )
                await asyncio.sleep(0.01)
        finally:
            await conn.close()

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.returncode is not None:
            raise RuntimeError(f"daemon exited {self.proc.returncode}; see {self._ctx.log_path}")

    def rss_mb(self, field: str = "VmHWM") -> float:
        """The daemon's resident memory: VmHWM is the peak, VmRSS the current."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_s(self) -> float:
        """The daemon's CPU time so far (user + system), in seconds."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, as a deploy would; killed if it has not exited within `timeout_s`."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def insert_noops(
    client: Client, count: int, *, conn: Any = None, chunk: int = 10_000, sync: bool = False
) -> None:
    noop = _bench_workers.sync_noop if sync else _bench_workers.noop
    for start in range(0, count, chunk):
        size = min(chunk, count - start)
        batch = [noop.new({"n": start + i}) for i in range(size)]
        await client.insert_all(batch, conn=conn)


async def wait_drained(conn: asyncpg.Connection, daemon: Daemon, timeout_s: float) -> None:
    """Until no bench job is available or executing (polled every 50 ms)."""
    deadline = time.monotonic() + timeout_s
    while await conn.fetchval(PENDING, _bench_workers.QUEUE):
        daemon.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"jobs not done within {timeout_s}s")
        await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def scrape(port: int, interval_s: float, scrapes: list[int]) -> None:
    """GET /metrics every `interval_s` as Prometheus would; each body's size in `scrapes`."""
    while True:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\nhost: bench\r\n\r\n")
        body = await reader.read()
        writer.close()
        if not body.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"/metrics answered {body[:80]!r}")
        scrapes.append(len(body))
        await asyncio.sleep(interval_s)


async def burn_down(
    ctx: Context,
    concurrency: int,
    *,
    keep_rows: bool = False,
    sync: bool = False,
    metrics: bool = False,
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
    """
    jobs = ctx.sizes.burn_jobs
    port = free_port() if metrics else 0
    env = {"JOBRUNNER_HTTP_LISTEN": f"127.0.0.1:{port}"} if metrics else None
    scrapes: list[int] = []
    async with connect(ctx.dsn) as client, client.pool.acquire() as conn:
        if keep_rows:
            await checkpoint(conn)
        else:
            await reset(conn)
        floor = await conn.fetchval("SELECT coalesce(max(id), 0) FROM jobrunner_jobs")
        threads = concurrency if sync else None
        async with Daemon(ctx, concurrency, env, threads=threads) as daemon:
            await asyncio.sleep(0.3)  # idle: start-up fetches and heartbeats are done
            scraper = asyncio.create_task(scrape(port, 1.0, scrapes)) if metrics else None
            try:
                cpu_before = daemon.cpu_s()
                async with conn.transaction():
                    await insert_noops(client, jobs, conn=conn, sync=sync)
                await wait_drained(conn, daemon, timeout_s=60 + jobs / 100)
                cpu_s = daemon.cpu_s() - cpu_before
            finally:
                if scraper is not None:
                    scraper.cancel()
                    await asyncio.gather(scraper, return_exceptions=True)
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


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile of sorted `values`, interpolating between ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within 0 and 100, got {p!r}")
    rank = (len(values) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


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


def log_summary(path: Path) -> dict[str, Any]:
    """How much the daemons logged, and how many lines were warnings or errors."""
    lines = warnings = errors = 0
    if path.exists():
        with path.open(errors="replace") as log:
            for line in log:
                lines += 1
                level = _level(line)
                warnings += level == "warning"
                errors += level in ("error", "critical")
    return {"path": str(path), "lines": lines, "warnings": warnings, "errors": errors}


def _level(line: str) -> str:
    try:
        entry = json.loads(line)
    except ValueError:
        return "error" if "Traceback" in line else ""
    return str(entry.get("level", "")) if isinstance(entry, dict) else ""
