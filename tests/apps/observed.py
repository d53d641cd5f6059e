"""Workers for the observability tests, and the daemon's side of tracing and error reports.

With JOBRUNNER_TEST_SPANS set, the daemon that imports this module traces with the
OpenTelemetry SDK and writes each finished span as a JSON line to that file; with
JOBRUNNER_TEST_ERRORS set, `report` (the `on_error` hook) writes each failed attempt there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from jobrunner import Cancel, Job, Snooze, worker


@worker(queue="observed", name="observed.ok")
async def ok(job: Job) -> None:
    """Completes, inside a span of its own when tracing."""
    if _tracer is not None:
        with _tracer.start_as_current_span("observed.ok.work"):
            return


@worker(queue="observed", name="observed.fail", max_attempts=1)
async def fail(job: Job) -> None:
    raise RuntimeError(job.args.get("message", "failed on purpose"))


@worker(queue="observed", name="observed.snooze")
async def snooze(job: Job) -> Snooze:
    return Snooze(3600)


@worker(queue="observed", name="observed.cancel")
async def cancel(job: Job) -> Cancel:
    return Cancel("not wanted")


def report(job: Job, exc: BaseException) -> None:
    """The on_error hook: one line per failed attempt."""
    import traceback

    line = {
        "job_id": job.id,
        "attempt": job.attempt,
        "worker": job.worker,
        "error": f"{type(exc).__name__}: {exc}",
        "traceback": "".join(traceback.format_exception(exc)),
    }
    with open(os.environ["JOBRUNNER_TEST_ERRORS"], "a") as out:
        out.write(json.dumps(line) + "\n")


_tracer: Any = None


def _span_json(span: Any) -> dict[str, Any]:
    parent = span.parent
    return {
        "name": span.name,
        "trace_id": format(span.context.trace_id, "032x"),
        "span_id": format(span.context.span_id, "016x"),
        "parent_span_id": format(parent.span_id, "016x") if parent is not None else None,
        "kind": span.kind.name,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "events": [event.name for event in span.events],
    }


def _install_tracing(path: str) -> None:
    global _tracer
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    from jobrunner.contrib import otel

    class FileExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            with open(path, "a") as out:
                for span in spans:
                    out.write(json.dumps(_span_json(span)) + "\n")
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter()))
    otel.instrument(provider)
    _tracer = provider.get_tracer("tests.apps.observed")


if os.environ.get("JOBRUNNER_TEST_SPANS"):
    _install_tracing(os.environ["JOBRUNNER_TEST_SPANS"])
