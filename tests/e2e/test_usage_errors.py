"""Bad usage at the command line: one `error:` line on stderr and exit 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import ROOT


def jobrunner(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobrunner", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["migrate", "--bogus"], "error: no such option: --bogus; see 'jobrunner migrate --help'"),
        (["nosuch"], "error: no such command 'nosuch'; see 'jobrunner --help'"),
        (["migrate", "--dsn"], "error: option '--dsn' requires an argument"),
        (
            ["start", "--queues", "default:1", "--shutdown-grace-s", "soon"],
            "error: invalid value for '--shutdown-grace-s': ",
        ),
    ],
)
def test_usage_errors_are_one_line(args: list[str], line: str) -> None:
    done = jobrunner(*args)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(line), done.stderr
    assert done.stdout == ""


def test_help_still_works() -> None:
    done = jobrunner("migrate", "--help")
    assert done.returncode == 0 and "Usage: jobrunner migrate" in done.stdout
    assert done.stderr == ""
