"""The daemon's HTTP endpoints: a small ASGI app of routes and a tiny server for it.

The routes are an ASGI application, so that a fuller server (uvicorn) or framework
(Starlette, mounting it) can serve them beside other pages later. The built-in server
speaks just enough HTTP/1.1 for probes and scrapers (GET and HEAD, one request per
connection, no request bodies) and runs in the daemon's event loop: it needs no extra.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from jobrunner.core.config import parse_listen

log = structlog.get_logger("jobrunner.http")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

MAX_HEAD_BYTES = 16_384
READ_TIMEOUT_S = 10.0
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}
_REASONS |= {400: "Bad Request", 501: "Not Implemented", 503: "Service Unavailable"}


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def json(cls, status: int, value: Any) -> Response:
        return cls(status, orjson.dumps(value) + b"\n", "application/json")


Handler = Callable[[], Awaitable[Response]]


class HttpApp:
    """An ASGI app of GET routes: `app.route("/metrics", handler)`; others answer 404.

    Example:
        >>> app = HttpApp()
        >>> app.route("/healthz", lambda: health.live())
    """

    def __init__(self) -> None:
        self._routes: dict[str, Handler] = {}

    def route(self, path: str, handler: Handler) -> None:
        self._routes[path] = handler

    @property
    def paths(self) -> list[str]:
        return sorted(self._routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan and websockets: nothing to do
        response = await self.respond(scope["method"], scope["path"])
        headers = [(b"content-type", response.content_type.encode())]
        headers += [(k.encode(), v.encode()) for k, v in response.headers]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    async def respond(self, method: str, path: str) -> Response:
        handler = self._routes.get(path)
        if handler is None:
            return Response.json(404, {"error": f"no such path {path!r}", "paths": self.paths})
        if method not in ("GET", "HEAD"):
            return Response(405, b"only GET\n", headers=(("allow", "GET, HEAD"),))
        try:
            return await handler()
        except Exception as exc:
            log.exception("http.handler_failed", path=path)
            return Response.json(500, {"error": type(exc).__name__})


class HttpServer:
    """Serves an ASGI app on `listen` (HOST:PORT) from the running event loop."""

    def __init__(self, app: HttpApp, listen: str) -> None:
        self.app = app
        self.host, self.port = parse_listen(listen)
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Bind (an OSError, e.g. the port is taken, propagates) and accept connections."""
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]  # port 0: the one given
        log.info("http.listening", host=self.host, port=self.port, paths=self.app.paths)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            await self._exchange(reader, writer)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, asyncio.LimitOverrunError):
            pass  # the client went away or sent garbage: nothing to answer
        finally:
            writer.close()
            if task is not None:
                self._clients.discard(task)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(READ_TIMEOUT_S):
            head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_HEAD_BYTES:
            return
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            await _write(writer, "HEAD", Response(400, b"bad request\n"), [])
            return
        method, target = parts[0], parts[1]
        path, _, query = target.partition("?")
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "headers": [],
        }
        sent: list[MutableMapping[str, Any]] = []

        async def receive() -> MutableMapping[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        start = next((m for m in sent if m["type"] == "http.response.start"), None)
        if start is None:
            return
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        await _write(writer, method, Response(start["status"], body), start.get("headers", []))


async def _write(
    writer: asyncio.StreamWriter, method: str, response: Response, headers: list[Any]
) -> None:
    status = response.status
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}".encode()]
    lines += [k + b": " + v for k, v in headers]
    lines += [b"content-length: %d" % len(response.body), b"connection: close", b"", b""]
    writer.write(b"\r\n".join(lines))
    if method != "HEAD":
        writer.write(response.body)
    await writer.drain()
