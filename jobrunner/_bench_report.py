"""The benchmark's report: each metric's label, unit and target, and the table of results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
    "workflow_plain_c10": Metric("burn-down c10, as many plain jobs as workflow steps", "jobs/s"),
    "workflow_c10": Metric("workflow fan-out/fan-in c10 (1 -> N-2 -> 1 steps)", "steps/s"),
    "workflow_ratio": Metric("  its time / the plain jobs' time", "ratio", 2.0, False),
    "workflow_insert_s": Metric("  insert_workflow of its N steps", "s"),
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
    "limits_plain_c10": Metric("burn-down c10, no cluster-wide limit", "jobs/s"),
    "limits_global_c10": Metric("burn-down c10, global_limit 10", "jobs/s"),
    "limits_global_ratio": Metric("  of the figure without it", "ratio", 0.85),
    "limits_partitions_c10": Metric(
        "burn-down c10, global_limit 1 per partition, 100 partitions", "jobs/s"
    ),
    "limits_partitions_cpu": Metric("  daemon CPU per job, 100 partitions", "us"),
    "scale_c50_ratio": Metric("  of the empty-table c50 figure", "ratio", 0.8),
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
    "trigger_scan_s": Metric("trigger scan, time to enqueue", "s"),
    "trigger_scan_jobs": Metric("  jobs enqueued by the first scan", "jobs"),
    "trigger_all_done_s": Metric("  until every record is done", "s"),
    "trigger_peak_rss_mb": Metric("  daemon peak RSS", "MB"),
    "trigger_ready_rss_mb": Metric("  daemon RSS when ready", "MB"),
}


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
