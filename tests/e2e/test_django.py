"""The Django integration's tests, run with pytest-django in a project of their own: on
this interpreter (Django 5.2 and the django-tasks backport under Python 3.11) and on
Django 6 under Python 3.12, in a virtualenv built here from the repo's own files."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import server_dsn, with_database
from tests.helpers import ROOT

DJANGO_6_VENV = ROOT / ".venv" / "django6"
DJANGO_6_REQUIREMENTS = (
    "django>=6.0,<6.1",
    "pytest>=8",
    "pytest-django>=4.9",
    "pytest-timeout>=2.3",
    "pytest-asyncio>=0.24",
)


def run_project_suite(python: str, database_suffix: str) -> None:
    suffix = os.environ.get("JOBRUNNER_TEST_DB", "main")
    env = {
        **os.environ,
        "JOBRUNNER_DJANGO_DSN": with_database(server_dsn(), "postgres"),
        "JOBRUNNER_DJANGO_TEST_DB": f"jobrunner_test_{suffix}_{database_suffix}",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-c", "tests/django_project/pytest.ini", "--rootdir", "tests/django_project",
         "--create-db", "tests/django_project"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and " skipped" not in result.stdout


def test_django_project_suite() -> None:
    """Django 5.2 with the django-tasks backport, on the suite's own interpreter."""
    run_project_suite(sys.executable, "django")


@pytest.mark.timeout(900)  # the first run builds the virtualenv
def test_django_project_suite_on_django_6() -> None:
    """Django 6's own `django.tasks` under Python 3.12; CI (CI=true) fails without 3.12."""
    python312 = find_python312()
    if python312 is None:
        message = "Python 3.12 is needed for the Django 6 tests (pyenv install 3.12)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    run_project_suite(str(django_6_venv(python312)), "django6")


def find_python312() -> str | None:
    """A Python 3.12 that runs: pyenv's installs, then the PATH's (a pyenv shim may not)."""
    pyenv = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))
    on_path = shutil.which("python3.12")
    for candidate in [*reversed(pyenv), *([on_path] if on_path else [])]:
        check = subprocess.run([candidate, "--version"], capture_output=True, timeout=30)
        if check.returncode == 0:
            return candidate
    return None


def django_6_venv(python312: str) -> Path:
    """The Django 6 virtualenv's python, (re)built when pyproject.toml or the list changes."""
    stamp_text = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + repr(DJANGO_6_REQUIREMENTS).encode()
    ).hexdigest()
    python = DJANGO_6_VENV / "bin" / "python"
    stamp = DJANGO_6_VENV / ".built"
    if python.exists() and stamp.exists() and stamp.read_text() == stamp_text:
        return python
    shutil.rmtree(DJANGO_6_VENV, ignore_errors=True)
    subprocess.run([python312, "-m", "venv", str(DJANGO_6_VENV)], check=True, timeout=120)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-e", f"{ROOT}[django]",
         *DJANGO_6_REQUIREMENTS],
        capture_output=True, text=True, timeout=780,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    stamp.write_text(stamp_text)
    return python
