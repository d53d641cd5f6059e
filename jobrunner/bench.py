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

from jobrunner import _bench_args, _bench_workflows
from jobrunner import _bench_cases as cases
from jobrunner import _bench_floor as floor_case
from jobrunner import _bench_soak as soak_case
from jobrunner._bench_args import CASES as CASES
from jobrunner._bench_args import DEFAULT_CASES as DEFAULT_CASES
from jobrunner._bench_args import sizes_for as sizes_for
from jobrunner._bench_env import DEFAULT_SERVER as DEFAULT_SERVER
from jobrunner._bench_env import create_database as create_database
from jobrunner._bench_env import drop_database as drop_database
from jobrunner._bench_env import machine as machine
from jobrunner._bench_env import server_dsn as server_dsn
from jobrunner._bench_env import versions as versions
from jobrunner._bench_harness import Context, Metrics, Sizes, log_summary, prepare_database
from jobrunner._bench_report import METRICS as METRICS
from jobrunner._bench_report import Metric as Metric
from jobrunner._bench_report import fmt as fmt
from jobrunner._bench_report import report as report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see `_bench_args`)."""
    return _bench_args.parse_args(argv, __doc__ or "")


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Median, min and max of one metric's runs."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": list(values),
    }


def add_ratios(results: dict[str, dict[str, Any]]) -> None:
    """Scale figures as a fraction of the empty-table ones, the global limit's figure as one
    of the figure without it, and figures as fractions of the floor's unless the runs paired
    each with a floor run just before (medians over medians)."""
    pairs = [(f"scale_{c}", f"burn_down_{c}", f"scale_{c}_ratio") for c in ("c10", "c50")]
    pairs.append(("limits_global_c10", "limits_plain_c10", "limits_global_ratio"))
    pairs += [
        ("burn_down_c10", "floor_c10", "burn_down_c10_of_floor"),
        ("burn_down_c50", "floor_c50", "burn_down_c50_of_floor"),
        ("insert_per_s", "floor_insert_per_s", "insert_of_floor"),
    ]
    for name, base_name, ratio_name in pairs:
        scaled, base = results.get(name), results.get(base_name)
        if scaled is None or base is None or ratio_name in results:
            continue
        ratio = scaled["median"] / base["median"]
        results[ratio_name] = {
            "median": ratio,
            "min": ratio,
            "max": ratio,
            "runs": [ratio],
        }


async def _burn_down(ctx: Context) -> Metrics:
    found: Metrics = {}
    for conc in (10, 50):
        floor = await floor_case.burn_down_alone(ctx, conc) if ctx.floor else None
        run = await cases.burn_down(ctx, conc)
        found[f"burn_down_c{conc}"] = run["jobs_per_s"]
        found[f"burn_down_c{conc}_cpu"] = run["cpu_us_per_job"]
        if floor is not None:  # the floor just before, in the same seconds
            found[f"burn_down_c{conc}_of_floor"] = run["jobs_per_s"] / floor
    sync = await cases.burn_down(ctx, 10, sync=True)
    found["burn_down_sync_c10"] = sync["jobs_per_s"]
    found["burn_down_sync_c10_cpu"] = sync["cpu_us_per_job"]
    return found


async def _latency(ctx: Context) -> Metrics:
    floor = await floor_case.wake_latency(ctx) if ctx.floor else None
    found = {f"wake_{key}": value for key, value in (await cases.wake_latency(ctx)).items()}
    if floor is not None:  # the floor just before, in the same seconds
        found["wake_p50_of_floor"] = found["wake_p50_ms"] / floor["floor_wake_p50_ms"]
        found["wake_p99_of_floor"] = found["wake_p99_ms"] / floor["floor_wake_p99_ms"]
    return found


async def _insert(ctx: Context) -> Metrics:
    floor = await floor_case.insert_rate_alone(ctx) if ctx.floor else None
    rate = await cases.insert_rate(ctx)
    concurrent = await cases.concurrent_insert_rate(ctx)
    batch = await cases.insert_all_time(ctx)
    sync_rate = await asyncio.to_thread(cases.sync_insert_rate, ctx)
    sync_batch = await asyncio.to_thread(cases.sync_insert_all_time, ctx)
    paired = {"insert_of_floor": rate["per_s"] / floor} if floor is not None else {}
    return {
        **paired,
        "insert_per_s": rate["per_s"],
        "insert_c50_per_s": concurrent["per_s"],
        "insert_all_s": batch["seconds"],
        "sync_insert_per_s": sync_rate["per_s"],
        "sync_insert_all_s": sync_batch["seconds"],
    }


async def _memory(ctx: Context) -> Metrics:
    found = await cases.memory(ctx)
    return {f"memory_{key}": value for key, value in found.items()}


async def _scale(ctx: Context) -> Metrics:
    """The burn-down on the preloaded table; with an empty database beside it, the same on
    its empty table just after, so that each ratio compares runs of the same minutes."""
    found: Metrics = {}
    empty = replace(ctx, dsn=ctx.empty_dsn) if ctx.empty_dsn else None
    for conc in (10, 50):
        loaded = await cases.burn_down(ctx, conc, keep_rows=True)
        found[f"scale_c{conc}"] = loaded["jobs_per_s"]
        found[f"scale_c{conc}_cpu"] = loaded["cpu_us_per_job"]
        if empty is not None:
            base = await cases.burn_down(empty, conc)
            found[f"scale_empty_c{conc}"] = base["jobs_per_s"]
            found[f"scale_c{conc}_ratio"] = loaded["jobs_per_s"] / base["jobs_per_s"]
    return found


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


async def _pgbouncer(ctx: Context) -> Metrics:
    """Burn-down with the daemon on the database directly, then through a PgBouncer in
    transaction-pool mode (20 server connections) with `pgbouncer = true`: LISTEN through
    `listen_url`, and with polling only."""
    from jobrunner._bench_pgbouncer import PgBouncer

    direct = await cases.burn_down(ctx, 10)
    bouncer = await asyncio.to_thread(PgBouncer(ctx.dsn, pool_size=20).start)
    try:
        via = bouncer.dsn(ctx.dsn.rsplit("/", 1)[1].split("?")[0])
        listening = {"JOBRUNNER_PGBOUNCER": "true", "JOBRUNNER_LISTEN_URL": ctx.dsn}
        pooled = await cases.burn_down(ctx, 10, through=via, env=listening)
        polling = await cases.burn_down(ctx, 10, through=via, env={"JOBRUNNER_PGBOUNCER": "true"})
    finally:
        await asyncio.to_thread(bouncer.stop)
    return {
        "pgbouncer_direct_c10": direct["jobs_per_s"],
        "pgbouncer_c10": pooled["jobs_per_s"],
        "pgbouncer_polling_c10": polling["jobs_per_s"],
        "pgbouncer_c10_cpu": pooled["cpu_us_per_job"],
    }


async def _trigger_scan(ctx: Context) -> Metrics:
    found = await cases.trigger_scan(ctx)
    return {f"trigger_{key}": value for key, value in found.items()}


RUNS: dict[str, Callable[[Context], Awaitable[Metrics]]] = {
    "floor": floor_case.floor,
    "burn-down": _burn_down,
    "latency": _latency,
    "insert": _insert,
    "memory": _memory,
    "scale": _scale,
    "dashboard": _dashboard,
    "metrics": _metrics,
    "bulk": _bulk,
    "limits": _limits,
    "pgbouncer": _pgbouncer,
    "workflows": _bench_workflows.workflows,
    "trigger-scan": _trigger_scan,
}


async def run_case(name: str, ctx: Context, runs: int) -> dict[str, list[float]]:
    """`runs` runs of one case; each metric's values in run order."""
    found: dict[str, list[float]] = {}
    if name == "scale":
        seconds = await cases.preload(ctx)
        _say(f"  preloaded {ctx.sizes.scale_rows:,} finished jobs in {seconds:.1f}s")
    if name == "soak":
        return await _soak(ctx)
    for run in range(1, runs + 1):
        started = time.perf_counter()
        metrics = await RUNS[name](ctx)
        for key, value in metrics.items():
            found.setdefault(key, []).append(value)
        shown = ", ".join(f"{k} {fmt(v)}" for k, v in metrics.items())
        _say(f"  {name} run {run}/{runs} ({time.perf_counter() - started:.1f}s): {shown}")
    return found


async def _soak(ctx: Context) -> dict[str, list[float]]:
    """One soak (its length makes runs pointless); its rows go to `ctx.soak_rows`."""
    assert ctx.soak is not None
    metrics, rows = await soak_case.soak(ctx, ctx.soak)
    ctx.soak_rows = rows
    for row in rows:
        _say(
            f"  soak interval {row['interval']}: {row['jobs_per_s']:,.0f} jobs/s, queue time "
            f"p50 {row['queue_p50_ms']:.2f} ms, table {row['table_mb']:.1f} MB"
        )
    return {key: [value] for key, value in metrics.items()}


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
        ctx = Context(dsn=dsn, workdir=workdir, sizes=sizes_for(args), embedded=args.embedded)
        ctx.floor = "floor" in args.cases
        if args.soak is not None:
            ctx.soak = soak_case.Soak(
                args.soak, args.soak_rate, args.soak_interval, args.soak_history
            )
        if "scale" in args.cases:  # the empty table to compare with, in the same minutes
            ctx.empty_dsn = await create_database(server, f"{args.database}_empty")
            await prepare_database(ctx.empty_dsn)
        for name in args.cases:
            _say(f"{name}:")
            for key, values in (await run_case(name, ctx, args.runs)).items():
                results[key] = summarize(values)
        logs = log_summary(ctx.log_path)
        shutil.rmtree(workdir)  # kept when a case failed: its daemon.log tells why
    finally:
        if not args.keep:
            await drop_database(server, args.database)
            if "scale" in args.cases:
                await drop_database(server, f"{args.database}_empty")
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
        "soak": ctx.soak_rows,
        "daemon": (
            "`jobrunner.Runner` embedded in a subprocess, nothing configured, "
            if args.embedded
            else "`jobrunner start --queues bench:N` subprocess, default settings, "
        )
        + f"JSON logs to a file ({logs['lines']:,} lines, {logs['warnings']} "
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
