"""The benchmark's harness: sizes, the context, daemons in subprocesses, inserts and waits."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import asyncpg

from jobrunner import _bench_workers
from jobrunner.db import migrate as _migrate

if TYPE_CHECKING:
    from typing import Self

    from jobrunner.client import Client

Metrics = dict[str, float]
EMBEDDED = "jobrunner._bench_embedded"  # run with -m: the embedded daemon

RESET = (
    "TRUNCATE jobrunner_jobs, jobrunner_nodes, jobrunner_queues, jobrunner_workflows, "
    "jobrunner_job_deps, jobrunner_batches RESTART IDENTITY"
)
PENDING = """
SELECT (SELECT count(*) FROM jobrunner_jobs WHERE state = 'available' AND queue = $1)
     + (SELECT count(*) FROM jobrunner_jobs WHERE state = 'executing')
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
    bulk_jobs: int = 100_000
    workflow_steps: int = 10_000
    trigger_rows: int = 1_000_000
    trigger_matching: int = 10_000


QUICK = Sizes(
    burn_jobs=2_000,
    latency_jobs=50,
    insert_s=0.5,
    insert_all_jobs=10_000,
    memory_jobs=20_000,
    memory_run_s=1.0,
    scale_rows=100_000,
    bulk_jobs=10_000,
    workflow_steps=2_000,
    trigger_rows=100_000,
    trigger_matching=1_000,
)


@dataclass(slots=True)
class Context:
    """What every case needs: the benchmark database and where daemons log."""

    dsn: str
    workdir: Path
    sizes: Sizes
    daemons: int = 0
    embedded: bool = False  # daemons run `jobrunner.Runner` in an application's process
    empty_dsn: str | None = None  # a database whose jobs table stays empty (the scale case)
    floor: bool = False  # pair the burn-down and insert figures with a floor run just before
    soak: Any = None  # the soak's shape (_bench_soak.Soak), when asked for
    soak_rows: list[dict[str, Any]] = field(default_factory=list)

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
    """`jobrunner start --queues bench:N` in a subprocess, JSON logs appended to a file; with
    `ctx.embedded`, a process that runs `jobrunner.Runner` as an application embeds it
    (nothing configured but the queue; the dashboard case keeps the CLI)."""

    def __init__(
        self,
        ctx: Context,
        concurrency: int,
        env: dict[str, str] | None = None,
        threads: int | None = None,
        options: str = "",
        web: str | None = None,
        dsn: str | None = None,
        apps: tuple[str, ...] = (),
    ) -> None:
        ctx.daemons += 1
        self.node = f"bench-{os.getpid()}-{ctx.daemons}"
        self._ctx = ctx
        spec = f"{_bench_workers.QUEUE}:{concurrency}{options}"
        target = dsn or ctx.dsn  # a pooler's, say
        if ctx.embedded and web is None:
            self._cmd = [sys.executable, "-m", EMBEDDED, target, spec, self.node]
            self._cmd += ["-" if threads is None else str(threads), *apps]
        else:
            self._cmd = self._cli(target, spec, threads, web, apps)
        self._env = daemon_env(env)
        self.proc: asyncio.subprocess.Process | None = None

    def _cli(
        self, dsn: str, spec: str, threads: int | None, web: str | None, apps: tuple[str, ...]
    ) -> list[str]:
        return [
            sys.executable,
            "-m",
            "jobrunner",
            "start",
            "--dsn",
            dsn,
            "--queues",
            spec,
            "--app",
            _bench_workers.__name__,
            "--node",
            self.node,
            *([] if threads is None else ["--threads", str(threads)]),
            *([] if web is None else ["--web", web]),
            *[arg for app in apps for arg in ("--app", app)],
        ]

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
    client: Client,
    count: int,
    *,
    conn: Any = None,
    chunk: int = 10_000,
    sync: bool = False,
    partitions: int = 0,
) -> None:
    """`count` no-op jobs; with `partitions`, args.p spreads them over that many partitions."""
    noop = _bench_workers.sync_noop if sync else _bench_workers.noop
    for start in range(0, count, chunk):
        size = min(chunk, count - start)
        batch = [
            noop.new(
                {"n": start + i, "p": (start + i) % partitions} if partitions else {"n": start + i}
            )
            for i in range(size)
        ]
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
        writer.write(b"GET /metrics HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
        body = await reader.read()
        writer.close()
        if not body.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"/metrics answered {body[:80]!r}")
        scrapes.append(len(body))
        await asyncio.sleep(interval_s)


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
