"""The benchmark's report: each metric's label, unit and target, and the table of results."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class Metric:
    """How one measured value is shown, and the target it is held to (higher or lower)."""

    label: str
    unit: str
    target: float | None = None
    higher_is_better: bool = True
    floor: str | None = None  # the floor's figure this one is also shown as a fraction of

    def meets(self, value: float) -> bool | None:
        if self.target is None:
            return None
        return value >= self.target if self.higher_is_better else value <= self.target


_METRICS: dict[str, Metric] = {
    "floor_c10": Metric("floor: bare asyncpg queue, c10", "jobs/s"),
    "floor_c50": Metric("floor: bare asyncpg queue, c50", "jobs/s"),
    "floor_insert_per_s": Metric("floor: bare single insert, one conn", "jobs/s"),
    "floor_wake_p50_ms": Metric("floor: wake latency p50", "ms"),
    "floor_wake_p99_ms": Metric("floor: wake latency p99", "ms"),
    "workflow_plain_c10": Metric("burn-down c10, as many plain jobs as workflow steps", "jobs/s"),
    "workflow_c10": Metric("workflow fan-out/fan-in c10 (1 -> N-2 -> 1 steps)", "steps/s"),
    "workflow_ratio": Metric("  its time / the plain jobs' time", "ratio", 2.0, False),
    "workflow_insert_s": Metric("  insert_workflow of its N steps", "s"),
    "burn_down_c10": Metric("burn-down, concurrency 10", "jobs/s", 9_000),
    "burn_down_c10_of_floor": Metric("  of the floor's c10", "ratio", 0.55),
    "burn_down_c50": Metric("burn-down, concurrency 50", "jobs/s", 20_000),
    "burn_down_c50_of_floor": Metric("  of the floor's c50", "ratio", 0.45),
    "burn_down_c10_cpu": Metric("  daemon CPU per job, c10", "us"),
    "burn_down_c50_cpu": Metric("  daemon CPU per job, c50", "us"),
    "burn_down_sync_c10": Metric("burn-down, sync workers, 10 threads", "jobs/s"),
    "burn_down_sync_c10_cpu": Metric("  daemon CPU per job, sync c10", "us"),
    "wake_p50_ms": Metric("wake latency p50", "ms", 1.0, higher_is_better=False),
    "wake_p90_ms": Metric("wake latency p90", "ms"),
    "wake_p99_ms": Metric("wake latency p99", "ms", 2.5, higher_is_better=False),
    "wake_p50_of_floor": Metric("  p50 over the floor's p50", "ratio", higher_is_better=False),
    "wake_p99_of_floor": Metric("  p99 over the floor's p99", "ratio", higher_is_better=False),
    "wake_max_ms": Metric("wake latency max", "ms"),
    "insert_per_s": Metric("client.insert, sequential", "jobs/s"),
    "insert_of_floor": Metric("  of the floor's single insert", "ratio", 0.55),
    "insert_c50_per_s": Metric("client.insert, 50 tasks at once", "jobs/s", 8_000),
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
    "scale_empty_c10": Metric("burn-down c10, empty table, just after", "jobs/s"),
    "scale_empty_c50": Metric("burn-down c50, empty table, just after", "jobs/s"),
    "scale_c10_ratio": Metric("  of the empty-table c10 figure", "ratio", 0.85),
    "limits_plain_c10": Metric("burn-down c10, no cluster-wide limit", "jobs/s"),
    "limits_global_c10": Metric("burn-down c10, global_limit 10", "jobs/s"),
    "limits_global_ratio": Metric("  of the figure without it", "ratio", 0.85),
    "limits_partitions_c10": Metric(
        "burn-down c10, global_limit 1 per partition, 100 partitions", "jobs/s"
    ),
    "limits_partitions_cpu": Metric("  daemon CPU per job, 100 partitions", "us"),
    "pgbouncer_direct_c10": Metric("burn-down c10, direct", "jobs/s"),
    "pgbouncer_c10": Metric("burn-down c10, PgBouncer + listen_url", "jobs/s"),
    "pgbouncer_polling_c10": Metric("burn-down c10, PgBouncer, polling", "jobs/s"),
    "pgbouncer_c10_cpu": Metric("  daemon CPU per job, PgBouncer", "us"),
    "scale_c50_ratio": Metric("  of the empty-table c50 figure", "ratio", 0.85),
    "dashboard_c10": Metric("burn-down c10, 10 dashboards open (--web)", "jobs/s"),
    "dashboard_c10_cpu": Metric("  daemon CPU per job, c10 with dashboards", "us"),
    "dashboard_c10_plain_cpu": Metric("  daemon CPU per job, c10 without them", "us"),
    "dashboard_c10_ratio": Metric("  of the c10 figure without them", "ratio", 0.9),
    "metrics_off_c10": Metric("burn-down c10, no HTTP endpoints", "jobs/s"),
    "metrics_on_c10": Metric("burn-down c10, /metrics scraped every 1s", "jobs/s"),
    "metrics_c10_ratio": Metric("  with metrics / without", "ratio", 0.95),
    "metrics_off_c50": Metric("burn-down c50, no HTTP endpoints", "jobs/s"),
    "metrics_on_c50": Metric("burn-down c50, /metrics scraped every 1s", "jobs/s"),
    "metrics_c50_ratio": Metric("  with metrics / without", "ratio", 0.95),
    "metrics_off_c50_cpu": Metric("  daemon CPU per job, c50, without", "us"),
    "metrics_on_c50_cpu": Metric("  daemon CPU per job, c50, with", "us"),
    "bulk_cancel_s": Metric("cancel_jobs by args, every job", "s"),
    "bulk_cancel_insert_max_ms": Metric("  slowest concurrent insert", "ms"),
    "bulk_cancel_insert_p50_ms": Metric("  concurrent insert p50", "ms"),
    "bulk_retry_s": Metric("retry_jobs by args, every job", "s"),
    "bulk_retry_insert_max_ms": Metric("  slowest concurrent insert", "ms"),
    "bulk_retry_insert_p50_ms": Metric("  concurrent insert p50", "ms"),
    "soak_first_per_s": Metric("soak: first interval", "jobs/s"),
    "soak_last_per_s": Metric("soak: last interval", "jobs/s"),
    "soak_last_ratio": Metric("  last / first", "ratio", 0.9),
    "soak_first_cpu": Metric("  daemon CPU per job, first interval", "us"),
    "soak_last_cpu": Metric("  daemon CPU per job, last interval", "us"),
    "soak_first_p50_ms": Metric("  queue time p50, first interval", "ms"),
    "soak_last_p50_ms": Metric("  queue time p50, last interval", "ms"),
    "soak_p50_ratio": Metric("  last / first", "ratio", 1.1, False),
    "soak_last_p99_ms": Metric("  queue time p99, last interval", "ms"),
    "soak_first_mb": Metric("  jobs table with indexes, first interval", "MB"),
    "soak_last_mb": Metric("  jobs table with indexes, last interval", "MB"),
    "soak_mb_ratio": Metric("  last / first", "ratio", 1.1, False),
    "soak_growth_mb_min": Metric("  growth from the first interval to the last", "MB/min"),
    "trigger_scan_s": Metric("trigger scan, time to enqueue", "s"),
    "trigger_scan_jobs": Metric("  jobs enqueued by the first scan", "jobs"),
    "trigger_all_done_s": Metric("  until every record is done", "s"),
    "trigger_peak_rss_mb": Metric("  daemon peak RSS", "MB"),
    "trigger_ready_rss_mb": Metric("  daemon RSS when ready", "MB"),
}


def _floor_of(key: str, metric: Metric) -> str | None:
    """The floor figure a throughput compares with: the bare loop at its concurrency, or
    the bare single insert."""
    if key in ("wake_p50_ms", "wake_p99_ms"):
        return f"floor_{key}"
    if metric.unit != "jobs/s" or key.startswith(("floor", "soak", "memory")):
        return None
    if "insert" in key:
        return "floor_insert_per_s"
    for conc in ("c10", "c50"):
        if conc in key:
            return f"floor_{conc}"
    return None


METRICS = {key: replace(m, floor=_floor_of(key, m)) for key, m in _METRICS.items()}


def fmt(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


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
        f"{'metric':<40} {'median':>10} {'min':>10} {'max':>10}  {'unit':<7} "
        f"{'of floor':>8}  target",
    ]
    results = data["results"]
    for key, metric in METRICS.items():
        found = data["results"].get(key)
        if found is None:
            continue
        median, low, high = (fmt(found[k]) for k in ("median", "min", "max"))
        floor = results.get(metric.floor) if metric.floor else None
        ratio = f"{found['median'] / floor['median']:.2f}x" if floor else ""
        lines.append(
            f"{metric.label:<40} {median:>10} {low:>10} {high:>10}  {metric.unit:<7} "
            f"{ratio:>8}  {_target(metric, found['median'])}"
        )
    if data.get("soak"):
        lines += ["", "soak, per interval:", curve(data["soak"])]
        if any(row.get("autovacuum") == "off" for row in data["soak"]):
            lines.append(
                "autovacuum is off on this server: the dead rows that pruning leaves are "
                "never reclaimed, so the table grows"
            )
    return "\n".join(lines)


def _target(metric: Metric, value: float) -> str:
    met = metric.meets(value)
    if met is None or metric.target is None:
        return ""
    sign = ">=" if metric.higher_is_better else "<="
    return f"{sign} {fmt(metric.target)} {'ok' if met else 'MISSED'}"


def curve(rows: list[dict[str, Any]]) -> str:
    """The per-interval table of the report."""
    lines = [
        f"{'interval':>8} {'jobs/s':>9} {'queue p50':>10} {'p99 ms':>8} {'table MB':>9} "
        f"{'live rows':>10} {'dead rows':>10} {'autovac':>7} {'CPU us/job':>10}"
    ]
    for r in rows:
        lines.append(
            f"{r['interval']:>8} {r['jobs_per_s']:>9,.0f} {r['queue_p50_ms']:>10.2f} "
            f"{r['queue_p99_ms']:>8.2f} {r['table_mb']:>9.1f} {r['live_rows']:>10,} "
            f"{r['dead_rows']:>10,} {r['autovacuums']:>7} {r['cpu_us_per_job']:>10.0f}"
        )
    return "\n".join(lines)
