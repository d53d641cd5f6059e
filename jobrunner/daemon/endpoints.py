"""What a runner adds besides its queues: the HTTP endpoints, the metrics, the error hook
and tracing, each from its setting (`[http] listen`, `on_error`, `otel`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from jobrunner.core import telemetry as _telemetry
from jobrunner.core.apps import load_callable
from jobrunner.core.errors import ConfigError
from jobrunner.daemon.health import Health, Probe
from jobrunner.daemon.http import HttpApp, HttpServer, Response

if TYPE_CHECKING:
    from jobrunner.daemon.health import Runner

log = structlog.get_logger("jobrunner.endpoints")

METRICS_EXTRA = "Prometheus metrics need the 'metrics' extra: pip install 'jobrunner[metrics]'"
OTEL_EXTRA = "otel = true needs the 'otel' extra: pip install 'jobrunner[otel]'"


def metrics_class() -> Any:
    """jobrunner.contrib.prometheus.Metrics, or None without prometheus_client."""
    try:
        from jobrunner.contrib.prometheus import Metrics
    except ImportError:
        return None
    return Metrics


def check(settings: Any, *, metrics_required: bool = False) -> None:
    """Fail fast, before anything starts, on a setting whose extra is missing."""
    if metrics_required and metrics_class() is None:
        raise ConfigError(METRICS_EXTRA)
    if settings.otel:
        try:
            from jobrunner.contrib import otel  # noqa: F401
        except ImportError:
            raise ConfigError(OTEL_EXTRA) from None


class Endpoints:
    """Started with the runner, stopped after it: hooks in, the HTTP server up."""

    def __init__(self, runner: Runner, *, mount: Any = None) -> None:
        self._runner = runner
        self._mount = mount  # an ASGI app for every other path: the dashboard
        self._probe: Probe | None = None
        self._metrics: Any = None
        self._observers: list[_telemetry.AttemptObserver] = []
        self.server: HttpServer | None = None

    async def start(self) -> None:
        """Install the hooks and bind the HTTP server (an OSError if the port is taken)."""
        settings = self._runner.settings
        if settings.on_error is not None:
            report = settings.on_error
            if isinstance(report, str):
                report = load_callable(report, "on_error")
            self._observe(_telemetry.error_observer(report))
        if settings.otel:
            from jobrunner.contrib import otel

            otel.instrument()
        if settings.http_listen is None:
            return
        self._probe = Probe(self._runner.client.dsn, self._runner.node)
        app = HttpApp()
        health = Health(self._runner, self._probe)
        app.route("/healthz", health.live)
        app.route("/readyz", health.ready)
        app.route("/metrics", self._render_metrics)
        if self._mount is not None:
            app.mount(self._mount)
        metrics = metrics_class()
        if metrics is not None:
            self._metrics = metrics(self._runner, self._probe)
            self._metrics.start()
        else:
            log.warning("http.no_metrics", reason=METRICS_EXTRA)
        self.server = HttpServer(app, settings.http_listen)
        try:
            await self.server.start()
        except OSError as exc:
            self.server = None
            await self.stop()
            raise ConfigError(
                f"cannot serve http on {settings.http_listen!r}: {exc.strerror or exc}"
            ) from None

    def _observe(self, observer: _telemetry.AttemptObserver) -> None:
        _telemetry.attempt_observers.append(observer)
        self._observers.append(observer)

    async def _render_metrics(self) -> Response:
        if self._metrics is None:
            return Response(501, (METRICS_EXTRA + "\n").encode())
        body = await self._metrics.render()
        return Response(200, body, self._metrics.content_type)

    async def stop(self) -> None:
        for observer in self._observers:
            if observer in _telemetry.attempt_observers:
                _telemetry.attempt_observers.remove(observer)
        self._observers.clear()
        if self._metrics is not None:
            self._metrics.stop()
            self._metrics = None
        if self.server is not None:
            await self.server.stop()
            self.server = None
        if self._probe is not None:
            await self._probe.close()
            self._probe = None
