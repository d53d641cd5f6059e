"""The job events' lines: jobrunner's own writer whatever structlog's configuration, one line
per finished attempt by default, and structlog only when asked."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from structlog.testing import capture_logs

from jobrunner.core import telemetry
from jobrunner.core.config import Settings
from jobrunner.core.errors import ConfigError

FIELDS = {"job_id": 7, "worker": "app.send", "queue": "mail", "attempt": 1}


@pytest.fixture(autouse=True)
def fresh_job_log() -> Iterator[None]:
    saved = telemetry._job_log
    telemetry._job_log = None
    yield
    telemetry._job_log = saved
    structlog.reset_defaults()


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines()]


def test_default_is_one_json_line_per_finished_job_whatever_structlog_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[object] = []

    def swallow(_logger: object, _name: str, event_dict: object) -> object:
        seen.append(event_dict)  # an application's processor: the job events never reach it
        raise structlog.DropEvent

    structlog.configure(processors=[swallow])
    telemetry.emit(telemetry.JOB_START, logging.INFO, dict(FIELDS, queue_time_s=0.01))
    telemetry.emit(
        telemetry.JOB_STOP, logging.INFO, dict(FIELDS, duration_s=0.5, outcome="completed")
    )
    [stop] = lines(capsys)
    assert stop["event"] == "job.stop" and stop["level"] == "info"
    assert (stop["job_id"], stop["duration_s"], stop["outcome"]) == (7, 0.5, "completed")
    assert str(stop["timestamp"]).endswith("Z") and not seen


def test_job_start_switch_brings_the_start_line_back_at_info(
    capsys: pytest.CaptureFixture[str],
) -> None:
    telemetry.configure_job_log("info", "json", job_start=True)
    telemetry.emit(telemetry.JOB_START, logging.INFO, dict(FIELDS))
    telemetry.emit(telemetry.JOB_STOP, logging.INFO, dict(FIELDS))
    assert [(e["event"], e["level"]) for e in lines(capsys)] == [
        ("job.start", "info"),
        ("job.stop", "info"),
    ]


def test_debug_level_shows_the_start_line_and_warning_hides_the_stop_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    telemetry.configure_job_log("debug", "json")
    telemetry.emit(telemetry.JOB_START, logging.INFO, dict(FIELDS))
    assert [(e["event"], e["level"]) for e in lines(capsys)] == [("job.start", "debug")]
    telemetry.configure_job_log("warning", "json")
    telemetry.emit(telemetry.JOB_STOP, logging.INFO, dict(FIELDS))
    telemetry.emit(telemetry.JOB_EXCEPTION, logging.WARNING, dict(FIELDS, error="E"))
    assert [e["event"] for e in lines(capsys)] == ["job.exception"]


def test_console_format_renders_key_values(capsys: pytest.CaptureFixture[str]) -> None:
    telemetry.configure_job_log("info", "console")
    telemetry.emit(telemetry.JOB_STOP, logging.INFO, dict(FIELDS, outcome="completed"))
    out = capsys.readouterr().out
    assert "job.stop" in out and "outcome" in out and not out.startswith("{")


def test_structlog_route_hands_the_events_to_the_applications_configuration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    telemetry.configure_job_log("info", job_events="structlog")
    with capture_logs() as captured:
        telemetry.emit(telemetry.JOB_START, logging.INFO, dict(FIELDS))
        telemetry.emit(telemetry.JOB_STOP, logging.INFO, dict(FIELDS, outcome="completed"))
    assert [(e["event"], e["log_level"]) for e in captured] == [
        ("job.start", "debug"),
        ("job.stop", "info"),
    ]
    assert capsys.readouterr().out == ""


def test_settings_check_the_switches() -> None:
    assert Settings.load(env={"JOBRUNNER_LOG_JOB_START": "true"}).log_job_start is True
    with pytest.raises(ConfigError, match="log_job_events must be jobrunner or structlog"):
        Settings(log_job_events="stdout")
    with pytest.raises(ConfigError, match="JOBRUNNER_LOG_JOB_START must be true or false"):
        Settings.load(env={"JOBRUNNER_LOG_JOB_START": "maybe"})
