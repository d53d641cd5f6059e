"""The deployment files agree with the daemon: probes hit the health endpoints on the port
the daemon is told to serve them on, every stop waits longer than the daemon's graceful
stop, the containers run as a user, and the commands parse with the CLI as it is."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import typer
import yaml

from jobrunner.cli import app
from jobrunner.core.config import Settings
from tests import dockerfile
from tests.helpers import ROOT

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
# The daemon serves /healthz, /readyz and /metrics on `[http] listen` (default
# 127.0.0.1:9090), enabled by `jobrunner start --metrics HOST:PORT`; in a container it binds
# every interface on the same port.
HTTP_PORT = 9090
# Options and commands the deployment files use that come with the daemon's HTTP server
# and the dashboard; a build without them is told so instead of failing.
WITH_HTTP_SERVER = {"start --metrics", "web"}


def listen_port(argv: list[str]) -> int:
    """The port of `--metrics HOST:PORT` (or `--listen`) in a command line."""
    for flag in ("--metrics", "--listen"):
        if flag in argv:
            host, _, port = argv[argv.index(flag) + 1].rpartition(":")
            assert host == "0.0.0.0" or host == "127.0.0.1", argv
            return int(port)
    raise AssertionError(f"{argv} serves no HTTP endpoint")


def grace_s(env: dict[str, str], argv: list[str], tmp_path: Path) -> float:
    """The daemon's shutdown_grace_s with this environment and these arguments: the same
    settings code the daemon runs, so bad values in the manifests fail here too."""
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    settings = Settings.load(config=empty, env=env)
    if "--shutdown-grace-s" in argv:
        return float(argv[argv.index("--shutdown-grace-s") + 1])
    return settings.shutdown_grace_s


def seconds(value: str | int) -> float:
    """`30s`, `1m30s`, 45 -> seconds."""
    if isinstance(value, int):
        return value
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value):
        total += float(amount) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    return total


def health_url(test: list[str]) -> tuple[int, str]:
    """Port and path of the URL an exec-form healthcheck opens."""
    found = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", " ".join(test))
    assert found, test
    assert test[:2] in (["CMD", "python"], ["python", "-c"]), test
    return int(found.group(1)), found.group(2)


# The Dockerfile


def test_dockerfile_installs_only_what_the_build_script_resolves() -> None:
    build, final = dockerfile.parse()
    text = dockerfile.DOCKERFILE.read_text()
    # No hand-written package list: every install goes through deploy/build_image.py.
    assert "pip install" not in text and "pip wheel" not in text
    assert [argv[2] for argv in dockerfile.build_script_runs(build)] == ["wheels"]
    assert [argv[2] for argv in dockerfile.build_script_runs(final)] == ["install"]
    wheels = dockerfile.build_script_runs(build)[0]
    assert wheels[wheels.index("--extras") + 1] == "${EXTRAS}"
    assert any(arg.rest.startswith("EXTRAS=") for arg in build.all("ARG"))


def test_dockerfile_runs_as_a_user_with_exec_form_and_a_healthcheck() -> None:
    _, final = dockerfile.parse()
    user = final.last("USER").rest
    assert user.split(":")[0] not in ("root", "0") and user.split(":")[0].isdigit(), user
    entrypoint = final.last("ENTRYPOINT").exec_form()
    cmd = final.last("CMD").exec_form()
    assert entrypoint == ["jobrunner"] and cmd and cmd[0] == "start", (entrypoint, cmd)
    assert listen_port(cmd) == HTTP_PORT
    assert final.last("EXPOSE").rest == str(HTTP_PORT)
    healthcheck = final.last("HEALTHCHECK")
    assert healthcheck.rest.startswith("CMD ")
    test = dockerfile.Instruction("CMD", [], healthcheck.rest.removeprefix("CMD ")).exec_form()
    assert test is not None, "the healthcheck's command is not in exec form"
    assert health_url(test) == (HTTP_PORT, "/healthz")
    assert final.last("STOPSIGNAL").rest == "SIGTERM"


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is missing: pip install -e '.[dev]'"
    done = subprocess.run(
        [hadolint, str(dockerfile.DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


# deploy/compose.yaml


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def test_compose_migrates_once_then_runs_two_healthy_daemons(tmp_path: Path) -> None:
    services = compose()["services"]
    assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    migrate = services["migrate"]
    assert migrate["command"] == ["migrate"] and migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    daemons = {n: s for n, s in services.items() if s.get("command", [""])[0] == "start"}
    assert len(daemons) >= 2, sorted(services)
    for name, daemon in daemons.items():
        assert "profiles" not in daemon, name
        assert daemon["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
        port = listen_port(daemon["command"])
        assert port == HTTP_PORT, name
        assert health_url(daemon["healthcheck"]["test"]) == (port, "/healthz"), name
        grace = grace_s(daemon["environment"], daemon["command"], tmp_path)
        assert seconds(daemon["stop_grace_period"]) > grace, name
    assert len({d.get("hostname") for d in daemons.values()}) == len(daemons)


def test_compose_dashboard_is_behind_a_profile() -> None:
    web = compose()["services"]["web"]
    assert web["profiles"] == ["dashboard"] and web["command"][0] == "web"
    assert health_url(web["healthcheck"]["test"])[0] == listen_port(web["command"])


# deploy/kubernetes


def manifests() -> Iterator[dict[str, Any]]:
    for path in sorted(K8S.glob("*.yaml")):
        yield from (doc for doc in yaml.safe_load_all(path.read_text()) if doc)


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests() if m["kind"] == kind]


def container_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def probe_port(container: dict[str, Any], probe: dict[str, Any]) -> int:
    port = probe["httpGet"]["port"]
    if isinstance(port, str):
        named = {p["name"]: p["containerPort"] for p in container["ports"] if "name" in p}
        port = named[port]
    assert port in [p["containerPort"] for p in container["ports"]], probe
    return int(port)


@pytest.mark.parametrize("version", ["1.27", kubernetes_validate.latest_version()])
def test_kubernetes_manifests_follow_the_api_schema(version: str) -> None:
    """Strict: a misspelt or misplaced field is an error, as `kubectl apply` makes it."""
    for manifest in manifests():
        kubernetes_validate.validate(manifest, version, strict=True)


def test_kubernetes_daemon_probes_and_grace(tmp_path: Path) -> None:
    daemons = [
        d
        for d in of_kind("Deployment")
        if d["spec"]["template"]["spec"]["containers"][0]["args"][0] == "start"
    ]
    assert len(daemons) == 1
    pod = daemons[0]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    port = listen_port(container["args"])
    assert port == HTTP_PORT
    probes = {k: container[k] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
    paths = {k: (v["httpGet"]["path"], probe_port(container, v)) for k, v in probes.items()}
    assert paths == {
        "startupProbe": ("/healthz", port),
        "livenessProbe": ("/healthz", port),
        "readinessProbe": ("/readyz", port),
    }
    grace = grace_s(container_env(container), container["args"], tmp_path)
    assert pod["terminationGracePeriodSeconds"] > grace
    requests = container["resources"]["requests"]
    assert requests.keys() >= {"cpu", "memory"}
    assert daemons[0]["spec"]["replicas"] >= 2


def test_kubernetes_migrations_run_as_a_job() -> None:
    (job,) = of_kind("Job")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["migrate"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["resources"]["requests"].keys() >= {"cpu", "memory"}


def test_kubernetes_dashboard_service_reaches_the_dashboard() -> None:
    (service,) = of_kind("Service")
    selector = service["spec"]["selector"]
    targets = [
        d
        for d in of_kind("Deployment")
        if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert len(targets) == 1, "the Service must select the dashboard's pods only"
    (container,) = targets[0]["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "web"
    (port,) = service["spec"]["ports"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named[port["targetPort"]] == listen_port(container["args"])


# deploy/systemd


def systemd_unit() -> configparser.RawConfigParser:
    unit = configparser.RawConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "systemd" / "jobrunner.service")
    return unit


def test_systemd_unit_waits_out_the_graceful_stop(tmp_path: Path) -> None:
    service = systemd_unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/bin/jobrunner") and argv[1] == "start", argv
    assert listen_port(argv) == HTTP_PORT
    assert service["User"] != "root" and service["KillSignal"] == "SIGTERM"
    assert seconds(service["TimeoutStopSec"] + "s") > grace_s({}, argv, tmp_path)
    assert shlex.split(service["ExecStartPre"])[1:] == ["migrate"]


# Every command line, parsed by the CLI


def command_lines() -> Iterator[tuple[str, list[str]]]:
    _, final = dockerfile.parse()
    yield "Dockerfile CMD", final.last("CMD").exec_form() or []
    for name, service in compose()["services"].items():
        if "command" in service:
            yield f"compose {name}", service["command"]
    for manifest in manifests():
        pod = manifest["spec"].get("template", {}).get("spec", {})
        for container in pod.get("containers", []):
            yield f"{manifest['kind']} {manifest['metadata']['name']}", container["args"]
    service = systemd_unit()["Service"]
    for key in ("ExecStartPre", "ExecStart"):
        yield f"systemd {key}", shlex.split(service[key])[1:]


def unknown_parts(argv: list[str]) -> list[str]:
    """What `jobrunner ARGV` would refuse as usage: an unknown command or option."""
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    command = commands.get(argv[0])
    if command is None:
        return [argv[0]]
    known = {opt for param in command.params for opt in getattr(param, "opts", [])}
    return [f"{argv[0]} {a}" for a in argv[1:] if a.startswith("--") and a not in known]


def test_every_deployed_command_line_parses() -> None:
    unknown = {where: unknown_parts(argv) for where, argv in command_lines()}
    unknown = {where: parts for where, parts in unknown.items() if parts}
    pending = {part for parts in unknown.values() for part in parts}
    assert pending <= WITH_HTTP_SERVER, unknown
    if pending:
        pytest.skip(f"this build has no {', '.join(sorted(pending))} yet: {sorted(unknown)}")


def test_images_are_tagged_with_the_project_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    images = [s["image"] for s in compose()["services"].values() if "build" in s]
    for manifest in manifests():
        pod = manifest["spec"].get("template", {}).get("spec", {})
        images += [c["image"] for c in pod.get("containers", [])]
    assert images and set(images) == {f"jobrunner:{version}"}, images
