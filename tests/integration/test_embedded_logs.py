"""An embedded runner's job events: jobrunner's own JSON lines on stdout whatever the
application did with structlog, or the application's structlog when it asks for them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

import jobrunner
from jobrunner import Job, JobState, worker
from jobrunner.core import telemetry
from tests.helpers import eventually

QUEUE = "embedded_logs"


async def ended(client: jobrunner.Client, job_id: int, state: JobState) -> Job:
    async def check() -> Job:
        job = await client.get_job(job_id)
        assert job is not None and job.state is state, job
        return job

    return await eventually(check, 20)


@worker(queue=QUEUE, name="embedded_logs.noop")
async def noop(job: Job) -> None: ...


@pytest.fixture
def app_logs() -> Iterator[list[dict[str, Any]]]:
    """structlog configured by the application: every event lands in a list, none printed."""
    seen: list[dict[str, Any]] = []

    def keep(_logger: Any, _name: str, event_dict: Any) -> Any:
        seen.append(dict(event_dict))
        raise structlog.DropEvent

    saved = telemetry._job_log
    structlog.configure(processors=[keep])
    yield seen
    structlog.reset_defaults()
    telemetry._job_log = saved


async def test_an_embedded_runner_writes_one_json_line_per_job_whatever_structlog_does(
    client: jobrunner.Client,
    make_runner: Any,
    app_logs: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with make_runner(queues={QUEUE: 2}):
        job = await client.insert(noop.new({}))
        await ended(client, job.id, JobState.COMPLETED)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    mine = [line for line in lines if line.get("job_id") == job.id]
    assert [line["event"] for line in mine] == ["job.stop"]
    assert mine[0]["outcome"] == "completed" and mine[0]["level"] == "info"
    assert not [e for e in app_logs if e.get("event", "").startswith("job.")]
    assert any(e.get("event") == "node.started" for e in app_logs)  # the rest: structlog's


async def test_log_job_events_structlog_hands_them_to_the_applications_structlog(
    client: jobrunner.Client,
    make_runner: Any,
    app_logs: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with make_runner(queues={QUEUE: 2}, log_job_events="structlog", log_job_start=True):
        job = await client.insert(noop.new({}))
        await ended(client, job.id, JobState.COMPLETED)
    events = [e["event"] for e in app_logs if e.get("job_id") == job.id]
    assert events == ["job.start", "job.stop"]
    assert "job.stop" not in capsys.readouterr().out
