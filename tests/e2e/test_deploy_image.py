"""The image's build, replayed without a Docker engine: the Dockerfile's COPY lines and its
deploy/build_image.py steps run as written, with the container's paths mapped into a
temporary directory, then the installed `jobrunner` is run as the image's entrypoint would
be. A dependency of pyproject.toml that the steps leave out fails here, not in a deploy.

Needs PyPI (or the index pip is configured with); pip's cache keeps it to seconds."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests import dockerfile
from tests.dockerfile import Instruction, Stage
from tests.helpers import ROOT


class Replay:
    """A container's filesystem under `root`: `/opt/x` is `root/opt/x`."""

    def __init__(self, root: Path, build_args: dict[str, str]) -> None:
        self.root = root
        self.build_args = build_args
        self.mounts: dict[str, str] = {}  # container path -> path of the stage it comes from

    def path(self, container_path: str) -> Path:
        for target, source in self.mounts.items():
            if container_path == target or container_path.startswith(target + "/"):
                container_path = source + container_path[len(target) :]
        return self.root / container_path.lstrip("/")

    def copy(self, instruction: Instruction, workdir: str) -> None:
        """A COPY from the build context (the repository)."""
        *sources, target = instruction.exec_form() or shlex.split(instruction.rest)
        target = target if target.startswith("/") else f"{workdir}/{target}"
        for source in sources:
            origin = ROOT / source
            dest = self.path(target)
            if origin.is_dir():
                ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
                shutil.copytree(origin, dest, ignore=ignore, dirs_exist_ok=True)
            else:
                if target.endswith("/") or len(sources) > 1:
                    dest = dest / origin.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, dest)

    def expand(self, arg: str) -> str:
        for name, value in self.build_args.items():
            arg = arg.replace(f"${{{name}}}", value).replace(f"${name}", value)
        if arg == "python":
            return sys.executable
        if arg.startswith("/"):
            return str(self.path(arg))
        return arg

    def run_stage(self, stage: Stage, stages: list[Stage]) -> None:
        """COPY and the build script's RUN lines of one stage, in order."""
        workdir = "/"
        for instruction in stage.instructions:
            if instruction.keyword == "WORKDIR":
                workdir = instruction.rest
                self.path(workdir).mkdir(parents=True, exist_ok=True)
            elif instruction.keyword == "ARG" and "=" in instruction.rest:
                name, _, default = instruction.rest.partition("=")
                self.build_args.setdefault(name, default.strip('"'))
            elif instruction.keyword == "COPY" and not instruction.flags:
                self.copy(instruction, workdir)
            elif instruction.keyword == "RUN":
                self.run(instruction, workdir, stages)

    def run(self, instruction: Instruction, workdir: str, stages: list[Stage]) -> None:
        for flag in instruction.flags:
            options = dict(part.split("=", 1) for part in flag.removeprefix("--mount=").split(","))
            if options.get("type") == "bind":
                assert any(s.name == options["from"] for s in stages), flag
                self.mounts[options["target"]] = options["source"]
        for argv in dockerfile.build_script_runs(Stage("", None, [instruction])):
            done = subprocess.run(
                [self.expand(arg) for arg in argv],
                cwd=self.path(workdir),
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert done.returncode == 0, f"{argv} failed:\n{done.stdout[-3000:]}{done.stderr}"


def required(pyproject: Path, extras: list[str]) -> list[Requirement]:
    """The project's dependencies with those of `extras` (and of extras they name)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    own = canonicalize_name(project["name"])
    found = [Requirement(r) for r in project["dependencies"]]
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for raw in project["optional-dependencies"][extra]:
            req = Requirement(raw)
            if canonicalize_name(req.name) == own:
                pending.extend(req.extras)
            else:
                found.append(req)
    return [r for r in found if r.marker is None or r.marker.evaluate()]


def missing(venv: Path, requirements: list[Requirement]) -> list[str]:
    site = list(venv.glob("lib/python3*/site-packages"))
    assert len(site) == 1, site
    installed = {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in importlib.metadata.distributions(path=[str(site[0])])
    }
    return [
        str(r)
        for r in requirements
        if canonicalize_name(r.name) not in installed
        or not r.specifier.contains(installed[canonicalize_name(r.name)], prereleases=True)
    ]


def clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JOBRUNNER_", "VIRTUAL_ENV", "PYTHON"))
    }
    return {**env, "JOBRUNNER_LOG_FORMAT": "json"}


@dataclass
class Image:
    """The replayed image: its filesystem, and what its Dockerfile says to run."""

    replay: Replay
    final: Stage
    venv: Path
    jobrunner: Path
    workdir: Path
    extras: list[str]

    def run(self, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.jobrunner), *args],
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    stages = dockerfile.parse()
    build_args: dict[str, str] = {}
    replay = Replay(tmp_path_factory.mktemp("image"), build_args)
    for stage in stages:
        replay.run_stage(stage, stages)
    final = stages[-1]
    # The entrypoint, found on the image's PATH, is the installed jobrunner.
    path_env = next(i.rest for i in final.all("ENV") if "PATH=" in i.rest)
    bin_dir = re.search(r"PATH=(\S+?):\$PATH", path_env)
    assert bin_dir, path_env
    entrypoint = final.last("ENTRYPOINT").exec_form()
    assert entrypoint == ["jobrunner"]
    jobrunner = replay.path(bin_dir.group(1)) / entrypoint[0]
    assert jobrunner.is_file(), f"{jobrunner} was not installed"
    return Image(
        replay=replay,
        final=final,
        venv=jobrunner.parent.parent,
        jobrunner=jobrunner,
        workdir=replay.path(final.last("WORKDIR").rest),
        extras=[e for e in build_args.get("EXTRAS", "").split(",") if e],
    )


@pytest.fixture(scope="module")
async def image_database(
    make_database: Callable[[str], Awaitable[str]], worker_suffix: str, dsn: str
) -> str:
    return await make_database(f"jobrunner_test_{worker_suffix}_image")


@pytest.mark.timeout(600)
def test_the_image_build_installs_every_dependency_and_migrates(
    image: Image, image_database: str
) -> None:
    assert missing(image.venv, required(ROOT / "pyproject.toml", image.extras)) == []
    env = clean_env()

    helped = image.run("--help", env=env)
    assert helped.returncode == 0, helped.stderr
    assert "migrate" in helped.stdout and "start" in helped.stdout

    imported = subprocess.run(
        [str(image.venv / "bin" / "python"), "-c", "import jobrunner; print(jobrunner.__file__)"],
        cwd=image.workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert Path(imported.stdout.strip()).is_relative_to(image.venv), imported.stdout

    migrated = image.run("migrate", "--dsn", image_database, env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.startswith("applied 0001_initial"), migrated.stdout
    again = image.run("migrate", "--dsn", image_database, env=env)
    assert again.returncode == 0 and again.stdout.startswith("schema is current"), again.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.timeout(600)
def test_the_image_command_passes_its_healthcheck_and_stops_on_sigterm(
    image: Image, image_database: str
) -> None:
    """The image's CMD, with the environment the compose daemons get, on a free loopback
    port in place of 0.0.0.0:9090; the HEALTHCHECK command, pointed at the same port."""
    cmd = image.final.last("CMD").exec_form()
    assert cmd is not None and "--metrics" in cmd
    started = image.run("start", "--help", env=clean_env())
    if "--metrics" not in started.stdout:
        pytest.skip("this build's daemon has no --metrics option (no health endpoint) yet")
    port = free_port()
    cmd[cmd.index("--metrics") + 1] = f"127.0.0.1:{port}"
    healthcheck = image.final.last("HEALTHCHECK").rest.removeprefix("CMD ")
    probe = json.loads(healthcheck.replace(":9090/", f":{port}/"))
    probe[0] = str(image.venv / "bin" / probe[0])
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    env = {
        **clean_env(),
        **compose["services"]["worker-1"]["environment"],
        "JOBRUNNER_DATABASE_URL": image_database,
    }
    daemon = subprocess.Popen(
        [str(image.jobrunner), *cmd],
        cwd=image.workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            checked = subprocess.run(probe, capture_output=True, text=True, timeout=30)
            if checked.returncode == 0:
                break
            assert daemon.poll() is None, daemon.communicate()[0]
            assert time.monotonic() < deadline, checked.stderr
            time.sleep(0.2)
        daemon.send_signal(signal.SIGTERM)
        output, _ = daemon.communicate(timeout=60)
        assert daemon.returncode == 0, output
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
