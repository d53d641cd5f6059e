"""The [http] settings, the endpoints' router, the metrics' label bounds and the hooks."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from jobrunner.core import telemetry as _telemetry
from jobrunner.core.config import Settings, parse_listen
from jobrunner.core.errors import ConfigError
from jobrunner.core.job import Job
from jobrunner.daemon.http import HttpApp, HttpServer, Response


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:9090") == ("127.0.0.1", 9090)
    assert parse_listen(":9090") == ("0.0.0.0", 9090)
    assert parse_listen("9090") == ("127.0.0.1", 9090)
    assert parse_listen("[::1]:9090") == ("::1", 9090)
    for bad in ("localhost:http", "host:", "1:99999", ""):
        with pytest.raises(ConfigError, match="HOST:PORT"):
            parse_listen(bad)


def test_http_table_of_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "jobrunner.toml"
    config.write_text('[http]\nlisten = "0.0.0.0:9100"\n')
    assert Settings.load(config=config, env={}).http_listen == "0.0.0.0:9100"
    config.write_text("[http]\n")
    assert Settings.load(config=config, env={}).http_listen == "127.0.0.1:9090"
    config.write_text("[http]\nport = 9090\n")
    with pytest.raises(ConfigError, match=r"\[http\] takes only listen"):
        Settings.load(config=config, env={})


def test_the_dashboard_joins_the_one_server_with_web_true(tmp_path: Path) -> None:
    config = tmp_path / "jobrunner.toml"
    config.write_text('[http]\nlisten = "127.0.0.1:9100"\nweb = true\n')
    found = Settings.load(config=config, env={})
    assert found.http_web and found.http_listen == "127.0.0.1:9100"
    assert not Settings.load(config=config, env={"JOBRUNNER_HTTP_WEB": "false"}).http_web
    config.write_text('[http]\nweb = "yes"\n')
    with pytest.raises(ConfigError, match=r"\[http\] web must be true or false"):
        Settings.load(config=config, env={})
    with pytest.raises(ConfigError, match=r"web = true needs \[http\] listen"):
        Settings(http_web=True)


def test_environment_and_flags(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    env = {"JOBRUNNER_HTTP_LISTEN": ":9091", "JOBRUNNER_OTEL": "true"}
    settings = Settings.load(config=empty, env=env)
    assert (settings.http_listen, settings.otel) == (":9091", True)
    assert Settings.load(config=empty, env={}).http_listen is None  # off by default
    with pytest.raises(ConfigError, match="JOBRUNNER_OTEL must be true or false"):
        Settings.load(config=empty, env={"JOBRUNNER_OTEL": "maybe"})
    with pytest.raises(ConfigError, match="on_error must name a function"):
        Settings(on_error="  ")


async def test_router_answers_404_and_405() -> None:
    app = HttpApp()

    async def ok() -> Response:
        return Response.json(200, {"status": "ok"})

    app.route("/healthz", ok)
    assert (await app.respond("GET", "/healthz")).status == 200
    assert (await app.respond("HEAD", "/healthz")).status == 200
    assert (await app.respond("POST", "/healthz")).status == 405
    missing = await app.respond("GET", "/nope")
    assert missing.status == 404 and b"/healthz" in missing.body


async def test_a_failing_route_is_a_500_not_a_crash() -> None:
    app = HttpApp()

    async def broken() -> Response:
        raise RuntimeError("bug")

    app.route("/metrics", broken)
    assert (await app.respond("GET", "/metrics")).status == 500


def test_error_observer_reports_only_exceptions() -> None:
    seen: list[tuple[int, str]] = []

    def report(job: Job, exc: BaseException) -> None:
        seen.append((job.id, str(exc)))

    observer = _telemetry.error_observer(report)
    job: Any = type("J", (), {"id": 7})()
    for outcome, exc in (("completed", None), ("snoozed", None), ("failure", ValueError("x"))):
        end = observer(job)
        assert end is not None
        end(outcome, exc)
    assert seen == [(7, "x")]


def test_worker_labels_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from jobrunner.contrib import prometheus

    monkeypatch.setattr(prometheus, "MAX_WORKERS", 2)
    attributes = {"settings": Settings(), "leader": None, "producers": {}, "listener_connects": 1}
    runner: Any = type("R", (), attributes)()
    metrics = prometheus.Metrics(runner, probe=None)  # type: ignore[arg-type]
    for i in range(5):
        fields = {"queue": "q", "worker": f"w{i}", "outcome": "completed", "duration_s": 0.1}
        metrics._on_event(_telemetry.JOB_STOP, fields)
    workers = {
        s.labels["worker"]
        for family in metrics.registry.collect()
        if family.name == "jobrunner_jobs"
        for s in family.samples
    }
    text = generate_latest(metrics.registry).decode()
    assert 'jobrunner_jobs_total{outcome="completed",queue="q",worker="other"} 3.0' in text
    assert 'jobrunner_job_duration_seconds_bucket{le="0.1",queue="q",worker="w0"} 1.0' in text
    assert 'jobrunner_job_duration_seconds_bucket{le="0.05",queue="q",worker="w0"} 0.0' in text
    assert workers == {"w0", "w1", "other"}


async def test_a_mounted_app_gets_every_other_path_with_its_headers_and_body() -> None:
    seen: list[tuple[str, str, bytes, bytes]] = []

    async def echo(scope: Any, receive: Any, send: Any) -> None:
        body = (await receive())["body"]
        cookie = dict(scope["headers"]).get(b"cookie", b"")
        seen.append((scope["method"], scope["path"], body, cookie))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"echo:" + body})

    app = HttpApp()
    app.route("/healthz", lambda: _ok())
    app.mount(echo)
    server = HttpServer(app, "127.0.0.1:0")
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        form = b"a=1&b=2"
        writer.write(
            b"POST /actions/x HTTP/1.1\r\nHost: h\r\nCookie: c=1\r\n"
            b"Content-Length: %d\r\n\r\n%s"
            % (len(form), form)
            + b"GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        )  # two requests, one connection
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.count(b"HTTP/1.1 200 OK") == 2
        assert b"connection: keep-alive" in answer and answer.endswith(b"ok\n")
        assert b"echo:a=1&b=2" in answer
        assert seen == [("POST", "/actions/x", form, b"c=1")]
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /x HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 413 ")
        writer.close()
    finally:
        await server.stop()


async def _ok() -> Response:
    return Response(200, b"ok\n")


async def test_a_mounted_app_that_fails_is_a_500_and_the_server_goes_on() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("the database went away")

    app = HttpApp()
    app.route("/healthz", lambda: _ok())
    app.mount(broken)
    server = HttpServer(app, "127.0.0.1:0")
    await server.start()
    try:
        for path in (b"/jobs", b"/healthz"):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET " + path + b" HTTP/1.1\r\nConnection: close\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            expected = b"HTTP/1.1 500 " if path == b"/jobs" else b"HTTP/1.1 200 OK"
            assert answer.startswith(expected), answer
    finally:
        await server.stop()
