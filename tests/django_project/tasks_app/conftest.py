"""Each tasks test starts and ends with an empty jobs table; `daemon` runs
`manage.py jobrunner start` on the test database, as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from .helpers import PROJECT, ROOT, env


@pytest.fixture(autouse=True)
def no_jobs() -> Iterator[None]:
    """jobrunner's table is not Django's to flush between tests: each starts and ends empty."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM jobrunner_jobs")
    yield
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM jobrunner_jobs")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`manage.py jobrunner start` on the test database, stopped with SIGTERM."""
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(PROJECT / "manage.py"), "jobrunner", "start",
             "--queues", "default:4,emails:2", "--log-level", "info"],
            cwd=ROOT, env=env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    process.log = log  # type: ignore[attr-defined]
    yield process
    process.terminate()
    assert process.wait(30) == 0, log.read_text()
