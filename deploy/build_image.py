"""The steps that make jobrunner's image: the Dockerfile runs them, and so does a VM install.

    python deploy/build_image.py wheels --source . --wheels /wheels --extras web,metrics
    python deploy/build_image.py install --wheels /wheels --venv /opt/jobrunner

`wheels` builds jobrunner's wheel and a wheel of every distribution it needs, resolved from
its pyproject.toml with the extras named (none by default), so the set installed is the
project's own and cannot drift from it. It writes the requirement it built for
(`jobrunner[extras]==version`) beside the wheels. `install` makes a virtualenv and installs
that requirement from those wheels alone, with no index, then runs `pip check`: a
dependency missing from the wheels fails the build, not a deploy.

Only the standard library is used: it runs on a bare `python:3.x-slim`.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

REQUIREMENT_FILE = "requirement.txt"
EXTRA_NAME = re.compile(r"^[a-z0-9]+(?:[-_.][a-z0-9]+)*$")


class BuildError(Exception):
    """A step that cannot go on; its message is the one line printed. Exit code 2 for bad
    input, 1 for a step that failed."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def parse_extras(spec: str, defined: Sequence[str]) -> list[str]:
    """`"web, metrics"` -> `["metrics", "web"]`, refusing a name pyproject.toml lacks."""
    extras = sorted({part.strip().lower() for part in spec.split(",") if part.strip()})
    for extra in extras:
        if not EXTRA_NAME.match(extra) or extra not in defined:
            known = ", ".join(sorted(defined)) or "none"
            raise BuildError(f"unknown extra {extra!r}; pyproject.toml defines: {known}")
    return extras


def build_wheels(source: Path, wheels: Path, extras_spec: str) -> str:
    """Build the project's wheel and its dependencies' into `wheels`; returns the requirement
    the image installs, `jobrunner[extras]==version`."""
    pyproject = source / "pyproject.toml"
    if not pyproject.is_file():
        raise BuildError(f"no pyproject.toml in {str(source)!r}")
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = parse_extras(extras_spec, list(project.get("optional-dependencies", {})))
    suffix = f"[{','.join(extras)}]" if extras else ""
    pinned = f"{project['name']}{suffix}=={project['version']}"
    wheels.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "pip", "wheel", "--wheel-dir", str(wheels), f"{source}{suffix}"])
    (wheels / REQUIREMENT_FILE).write_text(pinned + "\n")
    return pinned


def install(wheels: Path, venv: Path) -> str:
    """A new virtualenv at `venv` with the built requirement installed from `wheels` only."""
    pinned_file = wheels / REQUIREMENT_FILE
    if not pinned_file.is_file():
        raise BuildError(f"no {REQUIREMENT_FILE} in {str(wheels)!r}; run the wheels step first")
    if venv.exists() and any(venv.iterdir()):
        raise BuildError(f"{str(venv)!r} exists and is not empty; give a new directory")
    pinned = pinned_file.read_text().strip()
    run([sys.executable, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    run([python, "-m", "pip", "install", "--no-index", "--find-links", str(wheels), pinned])
    run([python, "-m", "pip", "check"])
    return pinned


def run(argv: list[str]) -> None:
    print("+", " ".join(argv), flush=True)
    done = subprocess.run(argv, check=False)  # noqa: S603 (our own argv, no shell)
    if done.returncode != 0:
        command = " ".join(argv[:5])
        raise BuildError(f"'{command} ...' failed with exit code {done.returncode}", 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)
    wheels_step = steps.add_parser("wheels", help="build the wheels the image installs")
    wheels_step.add_argument("--source", type=Path, default=Path("."))
    wheels_step.add_argument("--wheels", type=Path, required=True)
    wheels_step.add_argument(
        "--extras", default=os.environ.get("EXTRAS", ""), help="comma-separated, e.g. web,metrics"
    )
    install_step = steps.add_parser("install", help="install them into a new virtualenv")
    install_step.add_argument("--wheels", type=Path, required=True)
    install_step.add_argument("--venv", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.step == "wheels":
            pinned = build_wheels(args.source.resolve(), args.wheels.resolve(), args.extras)
            print(f"built wheels for {pinned} in {args.wheels}")
        else:
            pinned = install(args.wheels.resolve(), args.venv.resolve())
            print(f"installed {pinned} in {args.venv}")
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
