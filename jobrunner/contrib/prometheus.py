"""Prometheus metrics of a running node (extra `jobrunner[metrics]`: prometheus_client).

Job counters and histograms are fed by the job events (`jobrunner.subscribe`); gauges are
read from the runner when scraped; job counts by state come from the database, counted by
the leader only (so N nodes do not count N times) at most every `job_counts_interval_s`.
Labels are queues, workers, states and outcomes, never args or ids; worker names beyond
`MAX_WORKERS` share the label `other`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import structlog

from .. import _db, _telemetry

try:
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "Prometheus metrics need the prometheus_client package: pip install 'jobrunner[metrics]'"
    ) from exc

if TYPE_CHECKING:
    from .._health import Probe
    from ..runner import Runner

log = structlog.get_logger("jobrunner.metrics")

MAX_WORKERS = 200
OTHER = "other"
# The executor's outcome names, as the metrics speak of them.
OUTCOMES = {
    "completed": "completed",
    "failure": "retried",
    "discarded": "discarded",
    "cancelled": "cancelled",
    "snoozed": "snoozed",
    "interrupted": "interrupted",
}
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


class _Series:
    """The children of one (queue, worker) pair, made once: labels() takes a lock."""

    __slots__ = ("duration", "outcomes", "wait")

    def __init__(self, metrics: Metrics, queue: str, worker: str) -> None:
        self.duration = metrics.duration.labels(queue, worker)
        self.wait = metrics.wait.labels(queue, worker)
        self.outcomes = {
            name: metrics.jobs.labels(queue, worker, name) for name in {*OUTCOMES.values(), OTHER}
        }


class Metrics:
    """A node's metrics in a registry of their own; `render()` is the /metrics body.

    Example:
        >>> metrics = Metrics(runner, probe)
        >>> metrics.start()          # subscribes to the job events
        >>> body = await metrics.render()
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, runner: Runner, probe: Probe) -> None:
        self._runner = runner
        self._probe = probe
        self._interval_s = runner.settings.job_counts_interval_s
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.jobs = Counter(
            "jobrunner_jobs",
            "Attempts ended on this node, by outcome (completed, retried, discarded, "
            "cancelled, snoozed, interrupted).",
            ["queue", "worker", "outcome"],
            registry=r,
        )
        self.duration = Histogram(
            "jobrunner_job_duration_seconds",
            "Run time of an attempt.",
            ["queue", "worker"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.wait = Histogram(
            "jobrunner_job_queue_wait_seconds",
            "Time from when a job was due (available) to when its attempt started.",
            ["queue", "worker"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.fetch = Histogram(
            "jobrunner_fetch_batch_size",
            "Jobs claimed by one fetch.",
            ["queue"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.ack = Histogram(
            "jobrunner_ack_batch_size",
            "Job outcomes written by one statement.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        r.register(_NodeCollector(self))
        self._series: dict[tuple[str, str], _Series] = {}
        self._workers: set[str] = set()
        self._fetch_children: dict[str, Any] = {}
        self._unsubscribe: Any = None
        self.counts: dict[str, dict[str, int]] | None = None
        self._counted_at = float("-inf")

    def start(self) -> None:
        self._unsubscribe = _telemetry.subscribe(self._on_event)
        _telemetry.on_batch = self._on_batch

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if _telemetry.on_batch == self._on_batch:
            _telemetry.on_batch = None

    def _worker(self, name: str) -> str:
        if name in self._workers:
            return name
        if len(self._workers) < MAX_WORKERS:
            self._workers.add(name)
            return name
        return OTHER

    def series(self, queue: str, worker: str) -> _Series:
        series = self._series.get((queue, worker))
        if series is None:
            label = self._worker(worker)  # past MAX_WORKERS names, one series for the rest
            series = self._series.get((queue, label)) or _Series(self, queue, label)
            self._series[(queue, label)] = series
        return series

    def _on_event(self, event: str, fields: dict[str, Any]) -> None:
        series = self.series(fields["queue"], fields["worker"])
        if event == _telemetry.JOB_START:
            wait = fields.get("queue_time_s")
            if wait is not None:
                series.wait.observe(wait)
            return
        outcome = OUTCOMES.get(fields.get("outcome", ""), OTHER)
        counter = series.outcomes.get(outcome)
        if counter is None:  # an outcome this version does not know: one more series
            counter = series.outcomes[outcome] = self.jobs.labels(
                fields["queue"], self._worker(fields["worker"]), outcome
            )
        counter.inc()
        duration = fields.get("duration_s")
        if duration is not None:
            series.duration.observe(duration)

    def _on_batch(self, kind: str, queue: str, size: int) -> None:
        if kind == "ack":
            self.ack.observe(size)
            return
        child = self._fetch_children.get(queue)
        if child is None:
            child = self._fetch_children[queue] = self.fetch.labels(queue)
        child.observe(size)

    async def render(self) -> bytes:
        """The exposition text, with job counts no older than the interval (leader only)."""
        await self._count()
        return generate_latest(self.registry)

    async def _count(self) -> None:
        if not self.leading:
            self.counts = None
            return
        now = time.monotonic()
        if now - self._counted_at < self._interval_s:
            return
        self._counted_at = now
        try:
            self.counts = await self._probe.count_jobs(timeout_s=max(self._interval_s, 2.0))
        except Exception as exc:
            self.counts = None
            log.warning("metrics.count_failed", error=_db.redact(str(exc)) or type(exc).__name__)

    @property
    def leading(self) -> bool:
        leader = self._runner.leader
        return leader is None or leader.is_leader


class _NodeCollector:
    """Gauges read at scrape time: the node's queues, its leadership and the job counts."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        runner = self._metrics._runner
        executing = GaugeMetricFamily(
            "jobrunner_queue_executing", "Jobs running on this node.", labels=["queue"]
        )
        limit = GaugeMetricFamily(
            "jobrunner_queue_limit", "Jobs this node may run at once.", labels=["queue"]
        )
        paused = GaugeMetricFamily(
            "jobrunner_queue_paused", "1 when the queue is paused on this node.", labels=["queue"]
        )
        fetches = CounterMetricFamily(
            "jobrunner_fetches", "Fetch statements run by this node.", labels=["queue"]
        )
        for name, producer in sorted(runner.producers.items()):
            executing.add_metric([name], producer.running)
            limit.add_metric([name], producer.limit)
            paused.add_metric([name], 1 if producer.paused else 0)
            fetches.add_metric([name], producer.fetches)
        yield from (executing, limit, paused, fetches)
        reconnects = CounterMetricFamily(
            "jobrunner_notifier_reconnects",
            "Times the listening connection was lost and made again.",
        )
        reconnects.add_metric([], max(runner.listener_connects - 1, 0))
        yield reconnects
        leader = GaugeMetricFamily(
            "jobrunner_leader", "1 while this node leads (cron, pruning, rescue)."
        )
        leader.add_metric([], 1 if self._metrics.leading else 0)
        yield leader
        counts = self._metrics.counts
        if counts is not None:
            jobs = GaugeMetricFamily(
                "jobrunner_queue_jobs",
                "Jobs in the database by queue and state (exported by the leader only).",
                labels=["queue", "state"],
            )
            for queue, states in sorted(counts.items()):
                for state, n in sorted(states.items()):
                    jobs.add_metric([queue, state], n)
            yield jobs
