"""The daemon's HTTP endpoints: a small ASGI app of routes and a tiny server for it.

The routes are an ASGI application; another ASGI app (the dashboard) may be mounted to
answer every path they do not, so one server serves /metrics, the probes and the pages.
The built-in server speaks just enough HTTP/1.1 for probes, scrapers and a browser
(requests one after another on a kept-alive connection, a request body up to MAX_BODY_BYTES
given by Content-Length, the response buffered) and runs in the daemon's event loop: it
needs no extra.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import orjson
import structlog

from jobrunner.core.config import parse_listen

log = structlog.get_logger("jobrunner.http")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

MAX_HEAD_BYTES = 16_384
MAX_BODY_BYTES = 1_048_576
READ_TIMEOUT_S = 10.0
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}
_REASONS |= {400: "Bad Request", 501: "Not Implemented", 503: "Service Unavailable"}
_REASONS |= {303: "See Other", 304: "Not Modified", 401: "Unauthorized", 403: "Forbidden"}
_REASONS |= {413: "Content Too Large"}


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
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class HttpApp:
    """An ASGI app of GET routes: `app.route("/metrics", handler)`; other paths go to the
    mounted app if there is one (`app.mount(dashboard)`), else answer 404.

    Example:
        >>> app = HttpApp()
        >>> app.route("/healthz", lambda: health.live())
    """

    def __init__(self) -> None:
        self._routes: dict[str, Handler] = {}
        self._mounted: ASGIApp | None = None

    def route(self, path: str, handler: Handler) -> None:
        self._routes[path] = handler

    def mount(self, app: ASGIApp) -> None:
        """Let `app` answer every path no route answers."""
        self._mounted = app

    @property
    def paths(self) -> list[str]:
        return sorted(self._routes) + (["/*"] if self._mounted is not None else [])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan and websockets: nothing to do
        if self._mounted is not None and scope["path"] not in self._routes:
            await self._mounted(scope, receive, send)
            return
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
            while await self._exchange(reader, writer):
                pass  # kept alive: a polling page reuses its connection
        except (OSError, asyncio.IncompleteReadError, TimeoutError, asyncio.LimitOverrunError):
            pass  # the client went away or sent garbage: nothing to answer
        finally:
            writer.close()
            if task is not None:
                self._clients.discard(task)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; True if the connection stays open for another."""
        async with asyncio.timeout(READ_TIMEOUT_S):
            head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_HEAD_BYTES:
            return False
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            await _write(writer, "HEAD", Response(400, b"bad request\n"), [])
            return False
        method, target = parts[0], parts[1]
        headers = _headers(lines[1:])
        size = _content_length(headers)
        if size is None or size > MAX_BODY_BYTES:
            status = 400 if size is None else 413
            await _write(writer, method, Response(status, b"bad request body\n"), [])
            return False
        if size and dict(headers).get(b"expect", b"").lower() == b"100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl waits for it on big bodies
        async with asyncio.timeout(READ_TIMEOUT_S):
            body = await reader.readexactly(size) if size else b""
        path, _, query = target.partition("?")
        scope = self._scope(writer, method, path, query, headers)
        sent = await self._call(scope, body)
        start = next((m for m in sent if m["type"] == "http.response.start"), None)
        if start is None:
            return False
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        keep = parts[2] == "HTTP/1.1" and dict(headers).get(b"connection", b"").lower() != b"close"
        response = Response(start["status"], body)
        await _write(writer, method, response, start.get("headers", []), keep=keep)
        return keep

    async def _call(self, scope: Scope, body: bytes) -> list[MutableMapping[str, Any]]:
        """Run the app on one request; the messages it sent (a 500 if it failed first)."""
        sent: list[MutableMapping[str, Any]] = []
        given = False
        answered = asyncio.Event()

        async def receive() -> MutableMapping[str, Any]:
            nonlocal given
            if given:  # the body is read: a disconnect is all that could follow, once answered
                await answered.wait()
                return {"type": "http.disconnect"}
            given = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        try:
            await self.app(scope, receive, send)
        except Exception:  # a mounted app's failure (Starlette sends its 500, then raises)
            log.exception("http.app_failed", path=scope["path"])
            if not any(m["type"] == "http.response.start" for m in sent):
                sent = [{"type": "http.response.start", "status": 500, "headers": []}]
                sent.append({"type": "http.response.body", "body": b"internal error\n"})
        finally:
            answered.set()
        return sent

    def _scope(
        self,
        writer: asyncio.StreamWriter,
        method: str,
        path: str,
        query: str,
        headers: list[tuple[bytes, bytes]],
    ) -> Scope:
        peer = writer.get_extra_info("peername")
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "scheme": "http",
            "method": method,
            "path": unquote(path),
            "raw_path": path.encode("latin-1"),
            "root_path": "",
            "query_string": query.encode("latin-1"),
            "headers": headers,
            "client": tuple(peer[:2]) if peer else None,
            "server": (self.host, self.port),
        }


def _headers(lines: list[str]) -> list[tuple[bytes, bytes]]:
    """The request's header lines as ASGI wants them: lower-case names, raw bytes."""
    found = []
    for line in lines:
        name, sep, value = line.partition(":")
        if sep and name.strip():
            found.append((name.strip().lower().encode("latin-1"), value.strip().encode("latin-1")))
    return found


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The body's size (0 without one); None if it is not given by a valid Content-Length
    (a chunked body is not read)."""
    values = {k: v for k, v in headers}
    if b"transfer-encoding" in values:
        return None
    raw = values.get(b"content-length", b"0").strip()
    return int(raw) if raw.isdigit() else None


_FRAMING = (b"content-length", b"transfer-encoding", b"connection")  # the server's own


async def _write(
    writer: asyncio.StreamWriter,
    method: str,
    response: Response,
    headers: list[Any],
    *,
    keep: bool = False,
) -> None:
    status = response.status
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}".encode()]
    lines += [k + b": " + v for k, v in headers if k.lower() not in _FRAMING]
    connection = b"connection: keep-alive" if keep else b"connection: close"
    lines += [b"content-length: %d" % len(response.body), connection, b"", b""]
    writer.write(b"\r\n".join(lines))
    if method != "HEAD":
        writer.write(response.body)
    await writer.drain()
