"""Serving the dashboard: its address and credentials checked, then uvicorn on the caller's
event loop (`jobrunner web`); `jobrunner start --web` mounts the same app on the daemon's
own HTTP server instead."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from jobrunner.core.errors import ConfigError

DEFAULT_LISTEN = "127.0.0.1:8080"
AUTH_ENV = "JOBRUNNER_WEB_AUTH"
TOKEN_ENV = "JOBRUNNER_WEB_TOKEN"  # noqa: S105 (the variable's name, not a secret)


def parse_listen(listen: str) -> tuple[str, int]:
    """("host", port) from "host:port" or "[v6]:port"; ConfigError on anything else."""
    host, sep, port = listen.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"listen address must be HOST:PORT (e.g. {DEFAULT_LISTEN}), got {listen!r}"
        )
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or ConfigError saying why not (a port in use, say)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family = infos[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def credentials(auth: str | None) -> tuple[str | None, str | None]:
    """(basic auth, bearer token): `auth` or JOBRUNNER_WEB_AUTH, and JOBRUNNER_WEB_TOKEN."""
    auth = auth or os.environ.get(AUTH_ENV) or None
    if auth is not None and (":" not in auth or not auth.partition(":")[0]):
        raise ConfigError(f"--auth must be USER:PASSWORD, got {auth.partition(':')[0]!r}:...")
    return auth, os.environ.get(TOKEN_ENV) or None


@dataclass(frozen=True, slots=True)
class Checked:
    """A checked address and the credentials: what serving the dashboard needs but a client."""

    host: str
    port: int
    auth: str | None
    token: str | None
    warning: str | None

    def app(self, client: Any, *, read_only: bool = False) -> Any:
        from jobrunner.web import app

        return app(client, auth=self.auth, token=self.token, read_only=read_only)


def check(listen: str, auth: str | None) -> Checked:
    """Parse `listen` and read the credentials: ConfigError with one line if either fails; a
    warning when the address is open to the network without authentication."""
    return check_address(*parse_listen(listen), auth)


def check_address(host: str, port: int, auth: str | None) -> Checked:
    """`check` of an address already parsed (the daemon's `[http] listen`)."""
    basic, token = credentials(auth)
    warning = None
    if not is_loopback(host) and basic is None and token is None:
        warning = (
            f"the dashboard on {host}:{port} has no authentication; anyone who can reach it "
            f"can act on jobs (use --auth or {TOKEN_ENV})"
        )
    return Checked(host, port, basic, token, warning)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A bound socket and the checked credentials (`jobrunner web`)."""

    sock: socket.socket
    checked: Checked

    @property
    def warning(self) -> str | None:
        return self.checked.warning

    def server(self, client: Any, *, read_only: bool = False) -> WebServer:
        return WebServer(self.checked.app(client, read_only=read_only), self.sock)


def prepare(listen: str, auth: str | None) -> Prepared:
    """Check `listen` and the credentials, and bind: ConfigError with one line if any fails."""
    checked = check(listen, auth)
    return Prepared(bind(checked.host, checked.port), checked)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the command that runs it owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebServer:
    """The dashboard served on `sock` until `stop()`."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        self._server = _Server(config)
        self._sock = sock
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host, port = self._sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    async def start(self) -> None:
        self._task = asyncio.create_task(
            self._server.serve(sockets=[self._sock]), name="jobrunner.web"
        )
        # The socket already listens: connections made before uvicorn's startup wait in
        # its backlog, so there is nothing to wait for here.

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        self._sock.close()
