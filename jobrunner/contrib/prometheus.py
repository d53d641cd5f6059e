"""Prometheus metrics of a running node (extra `jobrunner[metrics]`: prometheus_client).

Job counters and histograms are fed by the job events (`jobrunner.subscribe`); gauges are
read from the runner when scraped; job counts by state come from the database, counted by
the leader only (so N nodes do not count N times) at most every `job_counts_interval_s`.
Labels are queues, workers, states and outcomes, never args or ids; worker names beyond
`MAX_WORKERS` share the label `other`.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any, Protocol

import structlog

from jobrunner.core import telemetry as _telemetry
from jobrunner.db import connection as _db

try:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
    from prometheus_client.utils import floatToGoString
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "Prometheus metrics need the prometheus_client package: pip install 'jobrunner[metrics]'"
    ) from exc


class Probe(Protocol):
    """Where job counts come from (the daemon's probe connection)."""

    async def count_jobs(
        self, timeout_s: float, *, finished: bool = True
    ) -> dict[str, dict[str, int]]: ...


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
FINISHED = frozenset({"completed", "cancelled", "discarded"})
STATES = ("available", "scheduled", "executing", "retryable", *sorted(FINISHED))
FINISHED_EVERY = 12  # finished states: every 12 job count intervals (a minute by default)
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


class _Histogram:
    """Bucket counts and a sum, kept as plain numbers: the daemon updates them from its
    event loop only, so they need none of prometheus_client's locks (a fifth of the cost)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        found: list[tuple[str, float]] = []
        total = 0
        labels = (*map(floatToGoString, self.bounds), "+Inf")
        for bound, count in zip(labels, self.counts, strict=True):
            total += count
            found.append((bound, total))
        return found


class _Series:
    """What one (queue, worker) pair counts."""

    __slots__ = ("duration", "outcomes", "wait")

    def __init__(self) -> None:
        self.duration = _Histogram(DURATION_BUCKETS)
        self.wait = _Histogram(WAIT_BUCKETS)
        self.outcomes = dict.fromkeys(OUTCOMES.values(), 0)


class Metrics:
    """A node's metrics in a registry of their own; `render()` is the /metrics body.

    Example:
        >>> metrics = Metrics(runner, probe)
        >>> metrics.start()          # subscribes to the job events
        >>> body = await metrics.render()
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, runner: Any, probe: Probe) -> None:
        self._runner = runner
        self._probe = probe
        self._interval_s = runner.settings.job_counts_interval_s
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_JobCollector(self))
        self.registry.register(_NodeCollector(self))
        self.series: dict[tuple[str, str], _Series] = {}
        self.fetch: dict[str, _Histogram] = {}
        self.ack = _Histogram(BATCH_BUCKETS)
        self._workers: set[str] = set()
        self._unsubscribe: Any = None
        self.counts: dict[str, dict[str, int]] | None = None
        self._finished: dict[str, dict[str, int]] = {}  # the last count of finished states
        self._counted_at = self._all_counted_at = float("-inf")

    def start(self) -> None:
        # The end of an attempt carries its queue wait too: one call a job, not two.
        ends = (_telemetry.JOB_STOP, _telemetry.JOB_EXCEPTION)
        self._unsubscribe = _telemetry.subscribe(self._on_event, ends)
        _telemetry.on_batch = self._on_batch

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if _telemetry.on_batch == self._on_batch:
            _telemetry.on_batch = None

    def _series(self, queue: str, worker: str) -> _Series:
        if worker not in self._workers:
            if len(self._workers) < MAX_WORKERS:
                self._workers.add(worker)
            else:
                worker = OTHER  # past MAX_WORKERS names, one series for the rest
        series = self.series.get((queue, worker))
        if series is None:
            series = self.series[(queue, worker)] = _Series()
        return series

    def _on_event(self, _event: str, fields: dict[str, Any]) -> None:
        series = self._series(fields["queue"], fields["worker"])
        wait = fields.get("queue_time_s")
        if wait is not None:
            series.wait.observe(wait)
        duration = fields.get("duration_s")
        if duration is not None:
            series.duration.observe(duration)
        outcome = OUTCOMES.get(fields.get("outcome", ""), OTHER)
        series.outcomes[outcome] = series.outcomes.get(outcome, 0) + 1

    def _on_batch(self, kind: str, queue: str, size: int) -> None:
        if kind == "ack":
            self.ack.observe(size)
            return
        histogram = self.fetch.get(queue)
        if histogram is None:
            histogram = self.fetch[queue] = _Histogram(BATCH_BUCKETS)
        histogram.observe(size)

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
        # Unfinished states are read from their partial indexes each time; finished ones,
        # which need the whole table, every FINISHED_EVERY intervals.
        everything = now - self._all_counted_at >= self._interval_s * FINISHED_EVERY
        try:
            counts = await self._probe.count_jobs(
                timeout_s=max(self._interval_s, 2.0) * (5 if everything else 1),
                finished=everything,
            )
        except Exception as exc:
            self.counts = None
            log.warning("metrics.count_failed", error=_db.redact(str(exc)) or type(exc).__name__)
            return
        if everything:
            self._all_counted_at = now
            self._finished = {
                queue: {s: n for s, n in states.items() if s in FINISHED}
                for queue, states in counts.items()
            }
        else:
            for queue, states in self._finished.items():
                counts.setdefault(queue, {}).update(states)
        for states in counts.values():
            for state in STATES:
                states.setdefault(state, 0)
        self.counts = counts

    @property
    def leading(self) -> bool:
        leader = self._runner.leader
        return leader is None or leader.is_leader


class _JobCollector:
    """The attempts' counters and histograms, and the fetch and ack batch sizes."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        jobs = CounterMetricFamily(
            "jobrunner_jobs",
            "Attempts ended on this node, by outcome (completed, retried, discarded, "
            "cancelled, snoozed, interrupted).",
            labels=["queue", "worker", "outcome"],
        )
        duration = HistogramMetricFamily(
            "jobrunner_job_duration_seconds",
            "Run time of an attempt.",
            labels=["queue", "worker"],
        )
        wait = HistogramMetricFamily(
            "jobrunner_job_queue_wait_seconds",
            "Time from when a job was due (available) to when its attempt started.",
            labels=["queue", "worker"],
        )
        for (queue, worker), series in sorted(m.series.items()):
            for outcome, n in series.outcomes.items():
                jobs.add_metric([queue, worker, outcome], n)
            duration.add_metric([queue, worker], series.duration.buckets(), series.duration.sum)
            wait.add_metric([queue, worker], series.wait.buckets(), series.wait.sum)
        fetch = HistogramMetricFamily(
            "jobrunner_fetch_batch_size", "Jobs claimed by one fetch.", labels=["queue"]
        )
        for queue, histogram in sorted(m.fetch.items()):
            fetch.add_metric([queue], histogram.buckets(), histogram.sum)
        ack = HistogramMetricFamily(
            "jobrunner_ack_batch_size", "Job outcomes written by one statement."
        )
        ack.add_metric([], m.ack.buckets(), m.ack.sum)
        yield from (jobs, duration, wait, fetch, ack)


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
