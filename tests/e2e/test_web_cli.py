"""`jobrunner web` and `start --web` as a user runs them: one error line for bad input, the
extra named when it is missing, a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import httpx

from tests.helpers import FAST_ENV, NO_CONFIG, ROOT, eventually, run_cli


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1, (result.returncode, result.stderr)
    assert lines[0].startswith("error: ")
    return lines[0]


def test_bad_listen_addresses_and_credentials_are_one_line(dsn):
    for listen in ("nope", "127.0.0.1:", "127.0.0.1:99999", ":8080"):
        line = one_error_line(run_cli("web", "--listen", listen, dsn=dsn))
        assert "listen address must be HOST:PORT" in line, line
    line = one_error_line(run_cli("web", "--auth", "nocolon", dsn=dsn))
    assert "--auth must be USER:PASSWORD" in line and "nocolon" in line
    line = one_error_line(run_cli("start", "--web", "nope", "--config", str(NO_CONFIG), dsn=dsn))
    assert "listen address must be HOST:PORT" in line


def test_a_port_in_use_is_one_line(dsn):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_error_line(run_cli("web", "--listen", f"127.0.0.1:{port}", dsn=dsn))
    assert f"cannot listen on 127.0.0.1:{port}" in line


def test_without_the_extra_the_error_names_it(dsn):
    code = (
        "import sys; sys.modules['starlette'] = None; "
        "from jobrunner.cli import main; sys.argv = ['jobrunner', 'web']; main()"
    )
    env = {**os.environ, **FAST_ENV, "JOBRUNNER_DATABASE_URL": dsn}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    line = one_error_line(result)
    assert "pip install 'jobrunner[web]'" in line


async def test_serves_until_sigterm_and_exits_0(dsn, db):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, **FAST_ENV, "JOBRUNNER_WEB_TOKEN": "t0ken"}
    env.pop("JOBRUNNER_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobrunner", "web", "--listen", f"127.0.0.1:{port}", "--dsn", dsn],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:

        async def answers() -> int | None:
            try:
                async with httpx.AsyncClient() as h:
                    r = await h.get(f"http://127.0.0.1:{port}/api/queues")
            except httpx.TransportError:
                return None  # not listening yet: try again
            return r.status_code

        assert await eventually(answers, 20, interval_s=0.1) == 401
        async with httpx.AsyncClient() as h:
            ok = await h.get(
                f"http://127.0.0.1:{port}/api/queues", headers={"authorization": "Bearer t0ken"}
            )
        assert ok.status_code == 200 and "nodes" in ok.json()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert out.strip() == f"dashboard at http://127.0.0.1:{port}/"


async def test_start_web_serves_the_dashboard_metrics_and_probes_from_one_server(daemons, db):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon = daemons(
        queues="default:2", args=["--web", f"127.0.0.1:{port}"],
        env={"JOBRUNNER_WEB_TOKEN": "t0ken"},
    ).start()  # fmt: skip
    await daemon.wait_ready()
    base = f"http://127.0.0.1:{port}"
    bearer = {"authorization": "Bearer t0ken"}
    async with httpx.AsyncClient(base_url=base) as h:
        assert (await h.get("/healthz")).json()["status"] == "ok"  # probes need no auth
        assert (await h.get("/metrics")).status_code in (200, 501)
        assert (await h.get("/api/queues")).status_code == 401
        queues = await h.get("/api/queues", headers=bearer)
        assert queues.status_code == 200 and "default" in queues.text
        page = await h.get("/jobs", headers=bearer)
        assert page.status_code == 200 and "Content-Security-Policy" in page.headers
        # A POSTed form reaches the dashboard through the daemon's server: without the CSRF
        # token it is refused, and nothing is paused.
        refused = await h.post("/actions/queues/default", data={"action": "pause"}, headers=bearer)
        assert refused.status_code == 403 and "CSRF" in refused.text
    assert await db.fetchval("SELECT count(*) FROM jobrunner_control") == 0
    assert await daemon.stop() == 0, daemon.output()


def test_start_web_and_another_http_address_is_one_line(dsn):
    line = one_error_line(
        run_cli(
            "start", "--web", "127.0.0.1:18081", "--metrics", "127.0.0.1:18082",
            "--config", str(NO_CONFIG), dsn=dsn,
        )
    )  # fmt: skip
    assert "one HTTP server" in line and "differ" in line


async def test_http_web_true_in_the_config_serves_the_dashboard_on_that_server(
    daemons, db, tmp_path
):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "jobrunner.toml"
    config.write_text(f'[http]\nlisten = "127.0.0.1:{port}"\nweb = true\n')
    daemon = daemons(queues="default:1", env={"JOBRUNNER_CONFIG": str(config)}).start()
    await daemon.wait_ready()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as h:
        assert (await h.get("/readyz")).status_code == 200
        overview = await h.get("/")
        assert overview.status_code == 200 and 'data-queue="default"' in overview.text
    assert await daemon.stop() == 0, daemon.output()
