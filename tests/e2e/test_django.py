"""The Django integration's tests, run with pytest-django in a project of their own."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import server_dsn, with_database
from tests.helpers import ROOT


def test_django_project_suite() -> None:
    suffix = os.environ.get("JOBRUNNER_TEST_DB", "main")
    env = {
        **os.environ,
        "JOBRUNNER_DJANGO_DSN": with_database(server_dsn(), "postgres"),
        "JOBRUNNER_DJANGO_TEST_DB": f"jobrunner_test_{suffix}_django",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-c", "tests/django_project/pytest.ini", "--rootdir", "tests/django_project",
         "--create-db", "tests/django_project"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout
