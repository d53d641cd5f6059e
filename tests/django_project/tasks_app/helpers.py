"""What the tasks tests share: the jobs table, the project's manage.py, a job to perform."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.db import connection

ROOT = Path(__file__).resolve().parents[3]
PROJECT = ROOT / "tests" / "django_project"


def jobs(where: str = "TRUE") -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, state::text, queue, worker, priority, max_attempts, tags, args "
            f"FROM jobrunner_jobs WHERE {where} ORDER BY id"
        )
        return [(*row[:-1], json.loads(row[-1])) for row in cursor.fetchall()]


def manage(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PROJECT / "manage.py"), *args],
        cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def env() -> dict[str, str]:
    dsn = os.environ["JOBRUNNER_DJANGO_DSN"].rsplit("/", 1)[0]
    return {
        **os.environ,
        "JOBRUNNER_DJANGO_DSN": f"{dsn}/{connection.settings_dict['NAME']}",
        "PYTHONPATH": str(ROOT),
        "JOBRUNNER_CONFIG": str(ROOT / "tests" / "apps" / "no_config.toml"),
    }


def wait_for(
    result: Any, done: Callable[[Any], bool], process: subprocess.Popen[bytes], seconds: float = 30
) -> None:
    deadline = time.monotonic() + seconds
    while True:
        result.refresh()
        if done(result):
            return
        assert process.poll() is None, process.log.read_text()  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, f"{result.status}: {process.log.read_text()}"  # type: ignore[attr-defined]
        time.sleep(0.05)


def job_of(worker: Any, attempt: int, args: list[Any] | None = None) -> Any:
    from jobrunner.core.job import Job, JobState

    return Job(
        id=1, state=JobState.EXECUTING, queue=worker.queue, worker=worker.name,
        args={"args": args or [], "kwargs": {}}, attempt=attempt,
        max_attempts=worker.max_attempts, attempted_by=("node-1", "claim"),
        meta={"django_backend": "default"},
    )  # fmt: skip
