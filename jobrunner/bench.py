"""Benchmarks: `python -m jobrunner.bench` (or `make bench`).

Each case runs `--runs` times against a fresh database (`jobrunner_bench`, created and
dropped on the server of `--dsn`); the report gives medians with min and max, the
machine and the versions. Daemons are `jobrunner start` subprocesses on default
settings, logging JSON lines (one per job start and stop) to a file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import structlog

from jobrunner import _bench_cases as cases
from jobrunner._bench_cases import QUICK, Context, Metrics, Sizes
from jobrunner.db import queries as _queries

CASES = ("burn-down", "latency", "insert", "memory", "scale", "metrics")
DEFAULT_CASES = CASES  # the scale case preloads its 1,000,000 rows in ~10 s: cheap enough
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True, slots=True)
class Metric:
    """How one measured value is shown, and the target it is held to (higher or lower)."""

    label: str
    unit: str
    target: float | None = None
    higher_is_better: bool = True

    def meets(self, value: float) -> bool | None:
        if self.target is None:
            return None
        return value >= self.target if self.higher_is_better else value <= self.target


METRICS: dict[str, Metric] = {
    "burn_down_c10": Metric("burn-down, concurrency 10", "jobs/s", 8_000),
    "burn_down_c50": Metric("burn-down, concurrency 50", "jobs/s", 20_000),
    "burn_down_c10_cpu": Metric("  daemon CPU per job, c10", "us"),
    "burn_down_c50_cpu": Metric("  daemon CPU per job, c50", "us"),
    "burn_down_sync_c10": Metric("burn-down, sync workers, 10 threads", "jobs/s"),
    "burn_down_sync_c10_cpu": Metric("  daemon CPU per job, sync c10", "us"),
    "wake_p50_ms": Metric("wake latency p50", "ms", 1.0, higher_is_better=False),
    "wake_p90_ms": Metric("wake latency p90", "ms"),
    "wake_p99_ms": Metric("wake latency p99", "ms", 2.5, higher_is_better=False),
    "wake_max_ms": Metric("wake latency max", "ms"),
    "insert_per_s": Metric("client.insert, sequential", "jobs/s", 3_500),
    "insert_all_s": Metric("insert_all of 10,000 jobs", "s", 0.1, higher_is_better=False),
    "sync_insert_per_s": Metric("sync client insert, sequential", "jobs/s"),
    "sync_insert_all_s": Metric("sync client insert_all of 10,000 jobs", "s"),
    "memory_ready_rss_mb": Metric("daemon RSS when ready", "MB"),
    "memory_peak_rss_mb": Metric(
        "daemon peak RSS, jobs waiting", "MB", 150, higher_is_better=False
    ),
    "memory_jobs_done": Metric("jobs run while measuring memory", "jobs"),
    "scale_c10": Metric("burn-down c10, finished rows preloaded", "jobs/s"),
    "scale_c50": Metric("burn-down c50, finished rows preloaded", "jobs/s"),
    "scale_c10_cpu": Metric("  daemon CPU per job, c10", "us"),
    "scale_c50_cpu": Metric("  daemon CPU per job, c50", "us"),
    "scale_c10_ratio": Metric("  of the empty-table c10 figure", "ratio", 0.8),
    "scale_c50_ratio": Metric("  of the empty-table c50 figure", "ratio", 0.8),
    "metrics_off_c10": Metric("burn-down c10, no HTTP endpoints", "jobs/s"),
    "metrics_on_c10": Metric("burn-down c10, /metrics scraped every 1s", "jobs/s"),
    "metrics_c10_ratio": Metric("  with metrics / without", "ratio", 0.95),
    "metrics_off_c50": Metric("burn-down c50, no HTTP endpoints", "jobs/s"),
    "metrics_on_c50": Metric("burn-down c50, /metrics scraped every 1s", "jobs/s"),
    "metrics_c50_ratio": Metric("  with metrics / without", "ratio", 0.95),
    "metrics_off_c50_cpu": Metric("  daemon CPU per job, c50, without", "us"),
    "metrics_on_c50_cpu": Metric("  daemon CPU per job, c50, with", "us"),
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; `--cases` takes names separated by spaces or commas."""
    parser = argparse.ArgumentParser(
        prog="python -m jobrunner.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dsn",
        help="a server where the bench may create its database "
        "(default: JOBRUNNER_BENCH_DSN, else 127.0.0.1:5432, else embedded)",
    )
    parser.add_argument(
        "--database",
        default="jobrunner_bench",
        help="the database to create, use and drop (default: %(default)s)",
    )
    parser.add_argument(
        "--runs", type=int, default=None, help="runs per case (default 3, 1 with --quick)"
    )
    parser.add_argument("--quick", action="store_true", help="smaller cases, one run: a smoke test")
    parser.add_argument(
        "--cases",
        nargs="+",
        default=None,
        metavar="CASE",
        help=f"among {', '.join(CASES)} (default: all)",
    )
    parser.add_argument(
        "--with-scale",
        action="store_true",
        help="add the scale case to --cases (1,000,000 finished rows preloaded)",
    )
    parser.add_argument("--scale-rows", type=int, default=None, help="finished rows to preload")
    parser.add_argument(
        "--json", dest="json_path", metavar="PATH", help="also write the results here"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    args.cases = _case_names(parser, args.cases, args.with_scale)
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.runs < 1:
        parser.error(f"--runs must be >= 1, got {args.runs}")
    return args


def _case_names(
    parser: argparse.ArgumentParser, raw: list[str] | None, with_scale: bool
) -> tuple[str, ...]:
    if raw is None:
        return DEFAULT_CASES
    names = [name for item in raw for name in item.split(",") if name]
    unknown = [name for name in names if name not in CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; cases are {', '.join(CASES)}")
    if with_scale and "scale" not in names:
        names.append("scale")
    return tuple(n for n in CASES if n in names)


def sizes_for(args: argparse.Namespace) -> Sizes:
    sizes = QUICK if args.quick else Sizes()
    if args.scale_rows is not None:
        sizes = replace(sizes, scale_rows=args.scale_rows)
    return sizes


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Median, min and max of one metric's runs."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": list(values),
    }


def add_ratios(results: dict[str, dict[str, Any]]) -> None:
    """Scale figures as a fraction of the empty-table ones (medians over medians)."""
    for conc in ("c10", "c50"):
        scaled, base = results.get(f"scale_{conc}"), results.get(f"burn_down_{conc}")
        if scaled is None or base is None:
            continue
        ratio = scaled["median"] / base["median"]
        results[f"scale_{conc}_ratio"] = {
            "median": ratio,
            "min": ratio,
            "max": ratio,
            "runs": [ratio],
        }


def fmt(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def machine() -> dict[str, Any]:
    """Cores, CPU model, memory and load: the state the figures were taken in."""
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gb": _memory_gb(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "host": socket.gethostname(),
        "os": platform.platform(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


async def versions(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        server = await conn.fetchval("SHOW server_version")
        settings = {
            name: await conn.fetchval("SELECT current_setting($1)", name)
            for name in ("fsync", "synchronous_commit", "shared_buffers", "max_connections")
        }
    finally:
        await conn.close()
    return {
        "python": platform.python_version(),
        "postgresql": server,
        "server": settings,
        "asyncpg": asyncpg.__version__,
        "structlog": _package_version("structlog"),
        "jobrunner": _package_version("jobrunner"),
    }


def _server_up(host: str = "127.0.0.1", port: int = 5432) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


async def server_dsn(given: str | None) -> str:
    """--dsn, JOBRUNNER_BENCH_DSN, the local server, else the embedded PostgreSQL."""
    dsn = given or os.environ.get("JOBRUNNER_BENCH_DSN")
    if dsn:
        return dsn
    if _server_up():
        return DEFAULT_SERVER
    from jobrunner.db.connection import embedded_dsn

    return await asyncio.to_thread(embedded_dsn, Path(".jobrunner") / "bench")


async def create_database(server: str, name: str) -> str:
    """A fresh empty database `name` on `server`; returns its DSN."""
    admin = await asyncpg.connect(server)
    try:  # the name is quoted by PostgreSQL (format %I), never pasted into SQL
        await _queries.drop_database(admin, name)
        await _queries.create_database(admin, name)
    finally:
        await admin.close()
    return urlunsplit(urlsplit(server)._replace(path=f"/{quote(name, safe='')}"))


async def drop_database(server: str, name: str) -> None:
    admin = await asyncpg.connect(server)
    try:
        await _queries.drop_database(admin, name)
    finally:
        await admin.close()


async def _burn_down(ctx: Context) -> Metrics:
    c10 = await cases.burn_down(ctx, 10)
    c50 = await cases.burn_down(ctx, 50)
    sync = await cases.burn_down(ctx, 10, sync=True)
    return {
        "burn_down_c10": c10["jobs_per_s"],
        "burn_down_c50": c50["jobs_per_s"],
        "burn_down_c10_cpu": c10["cpu_us_per_job"],
        "burn_down_c50_cpu": c50["cpu_us_per_job"],
        "burn_down_sync_c10": sync["jobs_per_s"],
        "burn_down_sync_c10_cpu": sync["cpu_us_per_job"],
    }


async def _latency(ctx: Context) -> Metrics:
    found = await cases.wake_latency(ctx)
    return {f"wake_{key}": value for key, value in found.items()}


async def _insert(ctx: Context) -> Metrics:
    rate = await cases.insert_rate(ctx)
    batch = await cases.insert_all_time(ctx)
    sync_rate = await asyncio.to_thread(cases.sync_insert_rate, ctx)
    sync_batch = await asyncio.to_thread(cases.sync_insert_all_time, ctx)
    return {
        "insert_per_s": rate["per_s"],
        "insert_all_s": batch["seconds"],
        "sync_insert_per_s": sync_rate["per_s"],
        "sync_insert_all_s": sync_batch["seconds"],
    }


async def _memory(ctx: Context) -> Metrics:
    found = await cases.memory(ctx)
    return {f"memory_{key}": value for key, value in found.items()}


async def _scale(ctx: Context) -> Metrics:
    c10 = await cases.burn_down(ctx, 10, keep_rows=True)
    c50 = await cases.burn_down(ctx, 50, keep_rows=True)
    return {
        "scale_c10": c10["jobs_per_s"],
        "scale_c50": c50["jobs_per_s"],
        "scale_c10_cpu": c10["cpu_us_per_job"],
        "scale_c50_cpu": c50["cpu_us_per_job"],
    }


async def _metrics(ctx: Context) -> Metrics:
    """Burn-down without and with metrics, interleaved so that both see the same machine."""
    found: Metrics = {}
    for conc in (10, 50):
        off = await cases.burn_down(ctx, conc)
        on = await cases.burn_down(ctx, conc, metrics=True)
        found[f"metrics_off_c{conc}"] = off["jobs_per_s"]
        found[f"metrics_on_c{conc}"] = on["jobs_per_s"]
        found[f"metrics_c{conc}_ratio"] = on["jobs_per_s"] / off["jobs_per_s"]
        if conc == 50:
            found["metrics_off_c50_cpu"] = off["cpu_us_per_job"]
            found["metrics_on_c50_cpu"] = on["cpu_us_per_job"]
    return found


RUNS: dict[str, Callable[[Context], Awaitable[Metrics]]] = {
    "burn-down": _burn_down,
    "latency": _latency,
    "insert": _insert,
    "memory": _memory,
    "scale": _scale,
    "metrics": _metrics,
}


async def run_case(name: str, ctx: Context, runs: int) -> dict[str, list[float]]:
    """`runs` runs of one case; each metric's values in run order."""
    found: dict[str, list[float]] = {}
    if name == "scale":
        seconds = await cases.preload(ctx)
        _say(f"  preloaded {ctx.sizes.scale_rows:,} finished jobs in {seconds:.1f}s")
    for run in range(1, runs + 1):
        started = time.perf_counter()
        metrics = await RUNS[name](ctx)
        for key, value in metrics.items():
            found.setdefault(key, []).append(value)
        shown = ", ".join(f"{k} {fmt(v)}" for k, v in metrics.items())
        _say(f"  {name} run {run}/{runs} ({time.perf_counter() - started:.1f}s): {shown}")
    return found


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def report(data: dict[str, Any]) -> str:
    """The human-readable report: context lines, then one row per metric."""
    m, v = data["machine"], data["versions"]
    lines = [
        f"jobrunner bench: {data['runs']} run(s) per case, median [min - max]",
        f"machine: {m['cores']} cores, {m['cpu']}, {m['memory_gb']} GB, "
        f"load average at start {' '.join(str(x) for x in data['load_at_start'])}, "
        f"at end {' '.join(str(x) for x in m['load_avg'])}",
        f"versions: Python {v['python']}, PostgreSQL {v['postgresql']} "
        f"(fsync {v['server']['fsync']}, synchronous_commit {v['server']['synchronous_commit']}), "
        f"asyncpg {v['asyncpg']}, structlog {v['structlog']}, jobrunner {v['jobrunner']}",
        f"daemon: {data['daemon']}",
        "",
        f"{'metric':<40} {'median':>10} {'min':>10} {'max':>10}  {'unit':<7} target",
    ]
    for key, metric in METRICS.items():
        found = data["results"].get(key)
        if found is None:
            continue
        median, low, high = (fmt(found[k]) for k in ("median", "min", "max"))
        lines.append(
            f"{metric.label:<40} {median:>10} {low:>10} {high:>10}  {metric.unit:<7} "
            f"{_target(metric, found['median'])}"
        )
    return "\n".join(lines)


def _target(metric: Metric, value: float) -> str:
    met = metric.meets(value)
    if met is None or metric.target is None:
        return ""
    sign = ">=" if metric.higher_is_better else "<="
    return f"{sign} {fmt(metric.target)} {'ok' if met else 'MISSED'}"


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Create the database, run the cases, drop it; the results and their context."""
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    server = await server_dsn(args.dsn)
    dsn = await create_database(server, args.database)
    results: dict[str, dict[str, Any]] = {}
    try:
        await cases.prepare_database(dsn)
        info = await versions(dsn)
        workdir = Path(tempfile.mkdtemp(prefix="jobrunner-bench-"))
        ctx = Context(dsn=dsn, workdir=workdir, sizes=sizes_for(args))
        for name in args.cases:
            _say(f"{name}:")
            for key, values in (await run_case(name, ctx, args.runs)).items():
                results[key] = summarize(values)
        logs = cases.log_summary(ctx.log_path)
        shutil.rmtree(workdir)  # kept when a case failed: its daemon.log tells why
    finally:
        if not args.keep:
            await drop_database(server, args.database)
    add_ratios(results)
    return {
        "runs": args.runs,
        "quick": args.quick,
        "cases": list(args.cases),
        "sizes": _sizes_dict(ctx.sizes),
        "load_at_start": load_at_start,
        "machine": machine(),
        "versions": info,
        "daemon_logs": logs,
        "daemon": "`jobrunner start --queues bench:N` subprocess, default settings, "
        f"JSON logs to a file ({logs['lines']:,} lines, {logs['warnings']} "
        f"warnings, {logs['errors']} errors)",
        "results": results,
    }


def _sizes_dict(sizes: Sizes) -> dict[str, float]:
    return {name: getattr(sizes, name) for name in sizes.__dataclass_fields__}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        data = asyncio.run(bench(args))
    except (OSError, asyncpg.PostgresError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report(data))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
