"""Settings, queue names and cron strings that would misbehave are refused with one line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from jobrunner import CronEntry, Job, Settings, worker
from jobrunner.core.config import parse_queues
from jobrunner.core.errors import ConfigError, InvalidJob
from jobrunner.core.new_job import validate_queue
from jobrunner.ops.commands import check_limit
from jobrunner.plugins import cron


def _load(tmp_path: Path, text: str | bytes) -> Settings:
    path = tmp_path / "jobrunner.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return Settings.load(config=path, env={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("app = 5", "app must be a module name or a list of them, got 5"),
        ("app = [1, 2]", "app must be a module name or a list of them"),
        ("crontab = 5", "crontab must be a list of [[crontab]] tables, got 5"),
        ("log_level = 5", "log_level must be a string, got 5"),
        ('log_level = "loud"', "log level must be debug, info, warning or error"),
        ("node = 5", "node must be a string, got 5"),
        ("database_url = 5", "database_url must be a string, got 5"),
        ("data_dir = []", "data_dir must be a string"),
        ("prune_max_age_by_state = 5", "prune_max_age_by_state must be a table"),
        (
            '[[crontab]]\nschedule = 5\nworker = "w"',
            "crontab entry 'w': schedule must be a string, got 5",
        ),
        (
            '[[crontab]]\nschedule = "* * * * *"\nworker = "w"\nargs = 5',
            "crontab entry 'w': args must be a table, got 5",
        ),
    ],
)
def test_config_values_of_the_wrong_type_are_one_line(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        _load(tmp_path, text)


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file .*utf-8"):
        _load(tmp_path, b'node = "caf\xe9"\n')


@pytest.mark.parametrize(
    "name",
    [
        "poll_interval_s",
        "heartbeat_interval_s",
        "control_poll_interval_s",
        "stage_interval_s",
        "rescue_interval_s",
        "prune_interval_s",
        "cron_interval_s",
        "node_lease_s",
        "leader_lease_s",
    ],
)
def test_zero_intervals_and_leases_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=f"{name} must be at least 0.01 s, got 0"):
        Settings(**{name: 0})  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", ["a:9223372036854775808", "a:100001"])
def test_queue_limits_out_of_range_are_refused(spec: str) -> None:
    with pytest.raises(ConfigError, match="queue 'a' limit must be from 1 to 100000"):
        parse_queues(spec)


def test_a_queue_limit_out_of_range_in_the_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="queue 'a' limit must be an integer from 1 to 100000"):
        _load(tmp_path, "[queues]\na = 9223372036854775808")


@pytest.mark.parametrize("name", ["mail\n", "mail\r\n", "\nmail"])
def test_a_queue_name_with_a_newline_is_refused(name: str) -> None:
    with pytest.raises(InvalidJob, match="queue name must be"):
        validate_queue(name)


@worker(name="guards.report")
async def report(job: Job) -> None: ...


@pytest.mark.parametrize(
    "schedule", ["R * * * *", "0 R * * *", "H * * * *", "H(0-29) * * * *", "H/15 * * * *"]
)
def test_cron_strings_without_a_fixed_slot_are_refused(schedule: str) -> None:
    with pytest.raises(ConfigError, match="uses R or H"):
        cron.parse(CronEntry(schedule, "guards.report"))


@pytest.mark.parametrize("schedule", ["0 8 * * thu", "0 8 * mar *", "*/5 * * * *", "@hourly"])
def test_cron_strings_with_names_are_still_accepted(schedule: str) -> None:
    cron.parse(CronEntry(schedule, "guards.report"))


def test_deep_args_are_refused_as_invalid() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(5_000):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(InvalidJob, match="args is nested too deeply to store"):
        report.new(deep)


@pytest.mark.parametrize("limit", [0, 100_001, 2**63])
def test_a_scale_limit_out_of_range_is_refused(limit: int) -> None:
    with pytest.raises(ValueError, match="queue limit must be a whole number from 1 to 100000"):
        check_limit(limit)
