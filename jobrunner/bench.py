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
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from jobrunner import _bench_cases as cases
from jobrunner import _bench_workflows
from jobrunner._bench_env import DEFAULT_SERVER as DEFAULT_SERVER
from jobrunner._bench_env import create_database as create_database
from jobrunner._bench_env import drop_database as drop_database
from jobrunner._bench_env import machine as machine
from jobrunner._bench_env import server_dsn as server_dsn
from jobrunner._bench_env import versions as versions
from jobrunner._bench_harness import QUICK, Context, Metrics, Sizes, log_summary, prepare_database
from jobrunner._bench_report import METRICS as METRICS
from jobrunner._bench_report import Metric as Metric
from jobrunner._bench_report import fmt as fmt
from jobrunner._bench_report import report as report

CASES = (
    "burn-down",
    "latency",
    "insert",
    "memory",
    "scale",
    "metrics",
    "bulk",
    "limits",
    "dashboard",
    "workflows",
    "trigger-scan",
)
DEFAULT_CASES = CASES  # the scale case preloads its 1,000,000 rows in ~10 s: cheap enough


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
    """Scale figures as a fraction of the empty-table ones, and the global limit's figure as
    one of the figure without it (medians over medians)."""
    pairs = [(f"scale_{c}", f"burn_down_{c}", f"scale_{c}_ratio") for c in ("c10", "c50")]
    pairs.append(("limits_global_c10", "limits_plain_c10", "limits_global_ratio"))
    for name, base_name, ratio_name in pairs:
        scaled, base = results.get(name), results.get(base_name)
        if scaled is None or base is None:
            continue
        ratio = scaled["median"] / base["median"]
        results[ratio_name] = {
            "median": ratio,
            "min": ratio,
            "max": ratio,
            "runs": [ratio],
        }


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


async def _dashboard(ctx: Context) -> Metrics:
    """Burn-downs without and with ten open dashboards, in the order without, with, with,
    without, so that a machine's drift over the minutes weighs on both alike."""
    runs = []
    for viewers in (0, 10, 10, 0):
        runs.append(await cases.burn_down(ctx, 10, viewers=viewers))
    plain_s = runs[0]["seconds"] + runs[3]["seconds"]
    viewed_s = runs[1]["seconds"] + runs[2]["seconds"]
    return {
        "dashboard_c10": 2 * ctx.sizes.burn_jobs / viewed_s,
        "dashboard_c10_cpu": (runs[1]["cpu_us_per_job"] + runs[2]["cpu_us_per_job"]) / 2,
        "dashboard_c10_plain_cpu": (runs[0]["cpu_us_per_job"] + runs[3]["cpu_us_per_job"]) / 2,
        "dashboard_c10_ratio": plain_s / viewed_s,
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


async def _bulk(ctx: Context) -> Metrics:
    found = await cases.bulk_actions(ctx)
    return {f"bulk_{key}": value for key, value in found.items()}


async def _limits(ctx: Context) -> Metrics:
    """Burn-down without a cluster-wide limit, with one as large as the local limit, and
    with one job at a time in each of 100 partitions."""
    plain = await cases.burn_down(ctx, 10)
    limited = await cases.burn_down(ctx, 10, options=":global_limit=10")
    parts = await cases.burn_down(
        ctx, 10, options=":global_limit=1:partition_keys=p", partitions=100
    )
    return {
        "limits_plain_c10": plain["jobs_per_s"],
        "limits_global_c10": limited["jobs_per_s"],
        "limits_partitions_c10": parts["jobs_per_s"],
        "limits_partitions_cpu": parts["cpu_us_per_job"],
    }


async def _trigger_scan(ctx: Context) -> Metrics:
    found = await cases.trigger_scan(ctx)
    return {f"trigger_{key}": value for key, value in found.items()}


RUNS: dict[str, Callable[[Context], Awaitable[Metrics]]] = {
    "burn-down": _burn_down,
    "latency": _latency,
    "insert": _insert,
    "memory": _memory,
    "scale": _scale,
    "dashboard": _dashboard,
    "metrics": _metrics,
    "bulk": _bulk,
    "limits": _limits,
    "workflows": _bench_workflows.workflows,
    "trigger-scan": _trigger_scan,
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


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Create the database, run the cases, drop it; the results and their context."""
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    server = await server_dsn(args.dsn)
    dsn = await create_database(server, args.database)
    results: dict[str, dict[str, Any]] = {}
    try:
        await prepare_database(dsn)
        info = await versions(dsn)
        workdir = Path(tempfile.mkdtemp(prefix="jobrunner-bench-"))
        ctx = Context(dsn=dsn, workdir=workdir, sizes=sizes_for(args))
        for name in args.cases:
            _say(f"{name}:")
            for key, values in (await run_case(name, ctx, args.runs)).items():
                results[key] = summarize(values)
        logs = log_summary(ctx.log_path)
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
