"""OpenTelemetry tracing (extra `jobrunner[otel]`: opentelemetry-api).

`instrument()` makes every insert of this process a span in the caller's current trace,
stores that span's W3C trace context in each job's meta (`traceparent`, and `tracestate`
when there is one), and makes every attempt a span whose parent is the inserting span, so
a job's attempts appear in the trace of the request that enqueued it. Until `instrument()`
is called (or without the extra) nothing of this runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from jobrunner.core import telemetry as _telemetry

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "OpenTelemetry tracing needs the opentelemetry-api package: pip install 'jobrunner[otel]'"
    ) from exc

if TYPE_CHECKING:
    from jobrunner.core.job import Job
    from jobrunner.core.new_job import NewJob

TRACE_KEYS = ("traceparent", "tracestate")
_propagator = TraceContextTextMapPropagator()
_installed: _Tracing | None = None


def instrument(tracer_provider: trace.TracerProvider | None = None) -> None:
    """Trace inserts and attempts in this process (the global tracer provider by default).

    Call it once at start-up, after configuring the OpenTelemetry SDK; both the processes
    that insert and the daemons that run jobs call it (`otel = true` in the config does it
    for `jobrunner start`).

    Example:
        >>> from jobrunner.contrib import otel
        >>> otel.instrument()
    """
    global _installed
    uninstrument()
    _installed = _Tracing(trace.get_tracer("jobrunner", tracer_provider=tracer_provider))
    _telemetry.insert_tracer = _installed.insert
    _telemetry.attempt_observers.append(_installed.attempt)


def uninstrument() -> None:
    """Stop tracing (what `instrument()` installed is removed)."""
    global _installed
    if _installed is None:
        return
    if _telemetry.insert_tracer == _installed.insert:
        _telemetry.insert_tracer = None
    if _installed.attempt in _telemetry.attempt_observers:
        _telemetry.attempt_observers.remove(_installed.attempt)
    _installed = None


def _carries(job: NewJob) -> bool:
    """Whether the trace context may go in the job's meta: not when the whole meta makes
    the job unique (each insert would then be a different job)."""
    unique = job.unique
    return unique is None or "meta" not in unique.fields or unique.keys is not None


class _Tracing:
    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    async def insert(
        self, insert: Callable[[list[NewJob]], Awaitable[list[Job]]], jobs: list[NewJob]
    ) -> list[Job]:
        queues = sorted({job.queue for job in jobs})
        workers = sorted({job.worker for job in jobs})
        attributes: dict[str, Any] = {
            "messaging.system": "jobrunner",
            "messaging.operation.type": "send",
            "messaging.batch.message_count": len(jobs),
        }
        if len(queues) == 1:
            attributes["messaging.destination.name"] = queues[0]
        if len(workers) == 1:
            attributes["jobrunner.worker"] = workers[0]
        name = f"insert {queues[0]}" if len(queues) == 1 else "insert"
        with self._tracer.start_as_current_span(
            name, kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            carrier: dict[str, str] = {}
            _propagator.inject(carrier)
            traced = [
                dataclasses.replace(job, meta={**job.meta, **carrier}) if _carries(job) else job
                for job in jobs
            ]
            inserted = await insert(traced)
            ids = [job.id for job in inserted if not job.conflict]
            if len(ids) == 1:
                span.set_attribute("messaging.message.id", str(ids[0]))
            return inserted

    def attempt(self, job: Job) -> _telemetry.AttemptEnd:
        carrier = {k: v for k in TRACE_KEYS if isinstance(v := job.meta.get(k), str)}
        parent = _propagator.extract(carrier) if carrier else None
        span = self._tracer.start_span(
            f"process {job.queue}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "jobrunner",
                "messaging.operation.type": "process",
                "messaging.destination.name": job.queue,
                "messaging.message.id": str(job.id),
                "jobrunner.worker": job.worker,
                "jobrunner.attempt": job.attempt,
                "jobrunner.max_attempts": job.max_attempts,
            },
        )
        # Current while the worker runs (the attempt's task), so its own spans nest here.
        token = otel_context.attach(trace.set_span_in_context(span))

        def end(outcome: str, exc: BaseException | None) -> None:
            try:
                span.set_attribute("jobrunner.outcome", outcome)
                if exc is not None:
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                span.end()
            finally:
                otel_context.detach(token)

        return end
