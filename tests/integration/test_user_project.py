"""A user's own project (tests/user_project) run as pytest subprocesses, as its CI runs it:
the rollback-per-test pattern, pytest-xdist with two workers, and every combination of
pytest-asyncio's mode and loop scopes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import asyncpg
import pytest

from tests.conftest import server_dsn, with_database
from tests.helpers import ROOT

PROJECT = ROOT / "tests" / "user_project"
CHECKS = 8  # tests in check_signup.py


def run_project(dsn: str, *args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "JOBRUNNER_TEST_DSN": dsn,
        "JOBRUNNER_LOG_LEVEL": "warning",
        "PYTHONPATH": str(PROJECT),
    }
    env.pop("PYTEST_XDIST_WORKER", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@pytest.fixture
async def project_dsn(worker_suffix: str) -> str:
    """A DSN with `{worker}` in its database name; the workers' databases start absent."""
    base = f"jobrunner_test_{worker_suffix}_user"
    admin = await asyncpg.connect(server_dsn())
    try:
        for worker in ("main", "gw0", "gw1"):
            await admin.execute(f'DROP DATABASE IF EXISTS "{base}_{worker}" WITH (FORCE)')
    finally:
        await admin.close()
    return with_database(server_dsn(), base + "_{worker}")


@pytest.mark.parametrize("test_scope", ["function", "module", "session"])
@pytest.mark.parametrize("fixture_scope", ["function", "session"])
@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_the_project_passes_in_every_mode_and_loop_scope(
    project_dsn: str, mode: str, fixture_scope: str, test_scope: str
) -> None:
    run = run_project(
        project_dsn,
        "-p",
        "no:xdist",
        "-o",
        f"asyncio_mode={mode}",
        "-o",
        f"asyncio_default_fixture_loop_scope={fixture_scope}",
        "-o",
        f"asyncio_default_test_loop_scope={test_scope}",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{CHECKS} passed" in run.stdout, run.stdout


def test_the_project_under_xdist_gives_each_worker_its_own_database(project_dsn: str) -> None:
    run = run_project(project_dsn, "-n", "2", "-o", "asyncio_default_fixture_loop_scope=function")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{CHECKS} passed" in run.stdout, run.stdout


def test_xdist_workers_sharing_one_database_are_refused_with_one_line(project_dsn: str) -> None:
    shared = project_dsn.replace("{worker}", "main")
    run = run_project(shared, "-n", "2", "-o", "asyncio_default_fixture_loop_scope=function")
    assert run.returncode != 0
    assert "names one database for every pytest-xdist worker" in run.stdout, run.stdout
    assert "Traceback" not in run.stdout


async def test_a_transaction_open_at_teardown_fails_the_test_naming_it(project_dsn: str) -> None:
    """Not a hang until CI kills the run: the teardown's wait for a lock is bounded."""
    dsn = project_dsn.replace("{worker}", "main")
    admin = await asyncpg.connect(server_dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{dsn.rsplit("/", 1)[1]}"')
    finally:
        await admin.close()
    run = await asyncio.to_thread(
        run_project,
        dsn,
        "-p",
        "no:xdist",
        "-o",
        "python_files=hang_*.py",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        "hang_open_transaction.py",
        timeout_s=60,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 passed, 1 error" in run.stdout, run.stdout
    assert "jobrunner could not empty its tables after the test" in run.stdout
    assert "application 'users-db'" in run.stdout
