"""deploy/build_image.py refuses bad input with one line before it builds anything."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from tests.helpers import ROOT

SCRIPT = ROOT / "deploy" / "build_image.py"


def build_image(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_extra_pyproject_does_not_define_is_refused(tmp_path: Path) -> None:
    done = build_image(
        "wheels", "--source", str(ROOT), "--wheels", "w", "--extras", "embedded, nope", cwd=tmp_path
    )
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    defined = ", ".join(sorted(extras["optional-dependencies"]))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: unknown extra 'nope'; pyproject.toml defines: {defined}"
    ]
    assert done.stdout == "" and not (tmp_path / "w").exists()


def test_install_without_the_wheels_step_is_refused(tmp_path: Path) -> None:
    done = build_image("install", "--wheels", "w", "--venv", "v", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: no requirement.txt in '{tmp_path / 'w'}'; run the wheels step first"
    ]
    assert not (tmp_path / "v").exists()


def test_install_refuses_a_directory_in_use(tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "requirement.txt").write_text("jobrunner==0.1.0\n")
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "keep").write_text("")
    done = build_image("install", "--wheels", "w", "--venv", "v", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: '{tmp_path / 'v'}' exists and is not empty; give a new directory"
    ]
