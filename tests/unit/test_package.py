"""The package as users install it: exports, package data, entry points."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from importlib.resources import files

import jobrunner
from jobrunner.db import migrate as _migrate
from jobrunner.db import queries as _queries


def test_all_is_sorted_and_complete() -> None:
    public = {
        name
        for name, value in vars(jobrunner).items()
        if not name.startswith("_") and not isinstance(value, type(sys))
    }
    assert jobrunner.__all__ == sorted(jobrunner.__all__)
    assert set(jobrunner.__all__) == public
    for name in jobrunner.__all__:
        assert getattr(jobrunner, name) is not None


def test_design_names_are_exported() -> None:
    for name in (
        "Cancel",
        "Discard",
        "Job",
        "Snooze",
        "Unique",
        "worker",
        "connect",
        "current_client",
        "Runner",
        "Client",
        "JobState",
    ):
        assert name in jobrunner.__all__


def test_version_matches_the_distribution() -> None:
    assert jobrunner.__version__ == importlib.metadata.version("jobrunner")


def test_package_data_ships_sql_migrations_and_marker() -> None:
    root = files("jobrunner")
    assert root.joinpath("py.typed").is_file()
    sql_names = {
        p.name for p in files("jobrunner.db").joinpath("sql").iterdir() if p.name.endswith(".sql")
    }
    assert {"insert_jobs.sql", "get_job.sql", "cancel_job.sql", "retry_job.sql"} <= sql_names
    migrations = _migrate.available()
    versions = [m.version for m in migrations]
    # Numbered 1, 2, 3... with no gap: a file added later into a gap would run after newer
    # ones on databases already migrated, and two files with one number would clash.
    assert versions == list(range(1, len(migrations) + 1)), f"migration numbers {versions}"
    assert migrations[0].name == "0001_initial"
    assert _migrate.LATEST == migrations[-1].version


def test_every_sql_file_is_loaded_by_queries() -> None:
    """A SQL file and its function share a name: no file is left unused."""
    root = files("jobrunner.db").joinpath("sql")
    for entry in root.iterdir():
        if entry.name.endswith(".sql"):
            name = entry.name.removesuffix(".sql")
            assert getattr(_queries, name.upper()) == entry.read_text(), name
            assert callable(getattr(_queries, name)), name


def test_console_script_and_module_entry_point() -> None:
    scripts = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts["jobrunner"] == "jobrunner.cli:main"
    plugins = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="pytest11")}
    assert plugins["jobrunner"] == "jobrunner.pytest_plugin"
    done = subprocess.run(
        [sys.executable, "-m", "jobrunner", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "migrate" in done.stdout and "start" in done.stdout
