"""Metrics, health endpoints, traces and error reports of a live `jobrunner start`."""

from __future__ import annotations

import asyncio
import json
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from jobrunner.contrib import otel
from tests.apps import observed
from tests.helpers import NO_CONFIG, Daemon, eventually, run_cli

APPS = ("tests.apps.observed",)
METRICS_ARGS = ("--metrics", "127.0.0.1:0")
NO_CONFIG_ARGS = ("--config", str(NO_CONFIG))


async def http_get(url: str) -> tuple[int, bytes]:
    """GET `url`; the status and body, 503s included."""

    def get() -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    return await asyncio.to_thread(get)


async def http_port(daemon: Daemon) -> int:
    async def listening() -> int:
        found = daemon.events("http.listening")
        assert found, f"no http.listening in the log:\n{daemon.output()}"
        return int(found[0]["port"])

    return await eventually(listening, 20)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_of_a_live_daemon_count_the_jobs_it_ran(client, daemons) -> None:
    """Scraped and parsed with prometheus_client's parser: the counters per outcome, the
    histograms and the job counts by state match what the daemon ran."""
    # Counts every 0.2 s, the finished states every 12 of those (2.4 s).
    env = {"JOBRUNNER_JOB_COUNTS_INTERVAL_S": "0.2"}
    daemon = daemons(queues="observed:5", app=APPS, args=METRICS_ARGS, env=env).start()
    await daemon.wait_ready()
    port = await http_port(daemon)
    jobs = [observed.ok.new({"n": i}) for i in range(7)]
    jobs += [observed.fail.new({"n": i}) for i in range(2)]
    jobs += [observed.snooze.new({}), observed.cancel.new({})]
    await client.insert_all(jobs)
    url = f"http://127.0.0.1:{port}/metrics"

    async def scraped() -> dict[Any, float]:
        status, body = await http_get(url)
        assert status == 200, body
        found = samples(body.decode())
        total = "jobrunner_jobs_total"
        assert value(found, total, queue="observed", worker="observed.ok", outcome="completed") == 7
        assert (
            value(found, total, queue="observed", worker="observed.fail", outcome="discarded") == 2
        )
        assert (
            value(found, total, queue="observed", worker="observed.snooze", outcome="snoozed") == 1
        )
        assert (
            value(found, total, queue="observed", worker="observed.cancel", outcome="cancelled")
            == 1
        )
        jobs_by_state = "jobrunner_queue_jobs"
        assert value(found, jobs_by_state, queue="observed", state="completed") == 7
        assert value(found, jobs_by_state, queue="observed", state="discarded") == 2
        assert value(found, jobs_by_state, queue="observed", state="scheduled") == 1
        assert value(found, jobs_by_state, queue="observed", state="cancelled") == 1
        assert value(found, jobs_by_state, queue="observed", state="available") == 0
        assert (
            "jobrunner_queue_jobs",
            frozenset({("queue", "observed"), ("state", "available")}),
        ) in found
        return found

    found = await eventually(scraped, 30, interval_s=0.2)
    duration = "jobrunner_job_duration_seconds_count"
    assert value(found, duration, queue="observed", worker="observed.ok") == 7
    wait = "jobrunner_job_queue_wait_seconds_count"
    assert value(found, wait, queue="observed", worker="observed.fail") == 2
    fetched = sum(
        v
        for (name, labels), v in found.items()
        if name == "jobrunner_fetch_batch_size_sum" and ("queue", "observed") in labels
    )
    assert fetched == 11
    assert value(found, "jobrunner_ack_batch_size_sum") == 11
    assert value(found, "jobrunner_queue_limit", queue="observed") == 5
    assert value(found, "jobrunner_queue_executing", queue="observed") == 0
    assert value(found, "jobrunner_leader") == 1
    assert value(found, "jobrunner_notifier_reconnects_total") == 0
    # No job id or args in any label.
    for _, labels in found:
        assert set(dict(labels)) <= {"queue", "worker", "outcome", "state", "le"}

    status, body = await http_get(f"http://127.0.0.1:{port}/healthz")
    assert (status, json.loads(body)["status"]) == (200, "ok")
    status, body = await http_get(f"http://127.0.0.1:{port}/readyz")
    assert status == 200, body
    assert json.loads(body)["checks"] == {"database": "ok", "listener": "ok"}
    assert await daemon.stop() == 0


async def test_metrics_port_in_use_is_one_line_and_exit_2(dsn, daemons) -> None:
    first = daemons(queues="observed:1", app=APPS, args=METRICS_ARGS).start()
    await first.wait_ready()
    port = await http_port(first)
    second = daemons(queues="observed:1", app=APPS, args=("--metrics", f"127.0.0.1:{port}"))
    second.start()
    assert await second.wait() == 2
    lines = [line for line in second.output().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0], second.output()
    assert "Traceback" not in second.output()
    assert await first.stop() == 0


def test_metrics_flag_with_a_bad_address_is_bad_input(dsn) -> None:
    result = run_cli(
        "start", *NO_CONFIG_ARGS, "--queues", "default:1", "--metrics", "localhost:http", dsn=dsn
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: http listen address must be HOST:PORT")
    assert "Traceback" not in result.stderr


async def test_status_check_fails_for_a_stale_node(dsn, daemons) -> None:
    daemon = daemons(queues="observed:1", app=APPS).start()
    await daemon.wait_ready()
    live = await asyncio.to_thread(run_cli, "status", "--node", daemon.node, "--check", dsn=dsn)
    assert live.returncode == 0, live.stderr
    assert daemon.node in live.stdout
    daemon.kill()  # no clean stop: the row stays until its lease expires

    async def stale() -> bool:
        found = await asyncio.to_thread(
            run_cli, "status", "--node", daemon.node, "--check", dsn=dsn
        )
        assert found.returncode == 1, found.stdout + found.stderr
        assert (
            found.stderr == f"error: node {daemon.node!r} is stale: its heartbeat lease expired\n"
        )
        return True

    await eventually(stale, 20, interval_s=0.3)
    unknown = await asyncio.to_thread(run_cli, "status", "--node", "nobody", "--check", dsn=dsn)
    assert unknown.returncode == 1 and "no node named 'nobody'" in unknown.stderr
    usage = await asyncio.to_thread(run_cli, "status", "--check", dsn=dsn)
    assert usage.returncode == 2 and "--check needs --node" in usage.stderr


@pytest.fixture
def tracing() -> Any:
    """This process traces into an in-memory exporter; undone after the test."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.instrument(provider)
    try:
        yield provider, exporter
    finally:
        otel.uninstrument()
        provider.shutdown()


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_a_job_runs_in_the_trace_that_enqueued_it(client, daemons, tracing) -> None:
    """Enqueued in this process inside a request's span, run by a daemon subprocess that
    exports its spans to a file: each attempt's span is a child of the insert span, in the
    enqueuer's trace, and the worker's own span nests inside the attempt's."""
    provider, exporter = tracing
    spans_path = Path(tempfile.mkstemp(prefix="jobrunner-spans-", suffix=".jsonl")[1])
    daemon = daemons(
        queues="observed:2", app=APPS, env={"JOBRUNNER_TEST_SPANS": str(spans_path)}
    ).start()
    try:
        await daemon.wait_ready()
        with provider.get_tracer("tests").start_as_current_span("request") as request:
            ok = await client.insert(observed.ok.new({"n": 1}, meta={"source": "test"}))
            failed = await client.insert(observed.fail.new({"message": "boom"}))
        trace_id = format(request.get_span_context().trace_id, "032x")
        inserts = {s.name: s for s in exporter.get_finished_spans() if s.name.startswith("insert")}
        insert = inserts["insert observed"]
        assert insert.parent is not None
        assert insert.parent.span_id == request.get_span_context().span_id
        assert ok.meta["source"] == "test"
        assert ok.meta["traceparent"].split("-")[1] == trace_id

        async def exported() -> list[dict[str, Any]]:
            found = [s for s in read_lines(spans_path) if s["name"] == "process observed"]
            assert len(found) == 2, found
            return found

        processed = {s["attributes"]["jobrunner.worker"]: s for s in await eventually(exported)}
        insert_ids = {
            format(s.context.span_id, "016x")
            for s in exporter.get_finished_spans()
            if s.name == "insert observed"
        }
        for span in processed.values():
            assert span["trace_id"] == trace_id
            assert span["parent_span_id"] in insert_ids
            assert span["kind"] == "CONSUMER"
        done = processed["observed.ok"]
        assert done["attributes"]["jobrunner.outcome"] == "completed"
        assert done["attributes"]["jobrunner.attempt"] == 1
        assert done["attributes"]["messaging.destination.name"] == "observed"
        assert done["attributes"]["messaging.message.id"] == str(ok.id)
        broken = processed["observed.fail"]
        assert broken["attributes"]["jobrunner.outcome"] == "discarded"
        assert broken["attributes"]["messaging.message.id"] == str(failed.id)
        assert broken["status"] == "ERROR" and "exception" in broken["events"]
        work = [s for s in read_lines(spans_path) if s["name"] == "observed.ok.work"]
        assert [w["parent_span_id"] for w in work] == [done["span_id"]]
        assert await daemon.stop() == 0
    finally:
        spans_path.unlink(missing_ok=True)


async def test_inserts_without_instrumentation_carry_no_trace(client) -> None:
    job = await client.insert(observed.ok.new({"n": 1}))
    assert "traceparent" not in job.meta


async def test_on_error_hook_gets_each_failed_attempt(client, daemons) -> None:
    """`on_error` (JOBRUNNER_ON_ERROR) is called once per attempt that raised, with the job
    and the exception; jobs that complete, snooze or cancel are not reported."""
    errors_path = Path(tempfile.mkstemp(prefix="jobrunner-errors-", suffix=".jsonl")[1])
    daemon = daemons(
        queues="observed:2",
        app=APPS,
        env={
            "JOBRUNNER_ON_ERROR": "tests.apps.observed:report",
            "JOBRUNNER_TEST_ERRORS": str(errors_path),
        },
    ).start()
    try:
        await daemon.wait_ready()
        failed = await client.insert_all(
            [observed.fail.new({"message": f"boom {i}"}) for i in range(3)]
        )
        await client.insert_all([observed.ok.new({}), observed.snooze.new({})])

        async def reported() -> list[dict[str, Any]]:
            lines = read_lines(errors_path)
            assert len(lines) == 3, lines
            return lines

        lines = await eventually(reported, 20)
        assert sorted(line["job_id"] for line in lines) == sorted(job.id for job in failed)
        for line in lines:
            assert line["error"].startswith("RuntimeError: boom")
            assert "raise RuntimeError" in line["traceback"]

        async def all_done() -> bool:
            states = {(await client.get_job(j.id)).state for j in failed}  # type: ignore[union-attr]
            assert states == {"discarded"}
            return True

        await eventually(all_done)
        assert await daemon.stop() == 0
        assert len(read_lines(errors_path)) == 3
    finally:
        errors_path.unlink(missing_ok=True)


def test_on_error_naming_nothing_is_bad_input(dsn) -> None:
    result = run_cli(
        "start",
        *NO_CONFIG_ARGS,
        "--queues",
        "default:1",
        env={"JOBRUNNER_ON_ERROR": "tests.apps.observed:no_such_function"},
        dsn=dsn,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: on_error 'tests.apps.observed:no_such_function'")
    assert "Traceback" not in result.stderr
