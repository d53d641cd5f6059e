"""A TCP proxy on 127.0.0.1 in front of PostgreSQL, to break the network on purpose.

Daemons connect through it; the test then

- `cut_on(marker)`: swallows the first reply from the server that contains `marker` and
  resets that connection: the statement committed, its reply never arrives (the worst
  moment for a connection to die);
- `partition()` / `heal()`: holds every byte in both directions, as a network partition
  does to a node that keeps running (TCP buffers them), then lets them through;
- `cut_all()`: resets every connection at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


class Proxy:
    def __init__(self, upstream_dsn: str) -> None:
        parts = urlsplit(upstream_dsn)
        query = dict(parse_qsl(parts.query))
        socket_dir = query.pop("host", None)
        self._unix = f"{socket_dir}/.s.PGSQL.{parts.port or 5432}" if socket_dir else None
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 5432
        self._parts = parts._replace(query=urlencode(query))
        self._server: asyncio.Server | None = None
        self._pipes: set[_Pipe] = set()
        self._open = asyncio.Event()
        self._open.set()
        self._marker: bytes | None = None
        self.cut = asyncio.Event()
        self.port = 0
        self.connections = 0

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.heal()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.cut_all()

    def dsn(self) -> str:
        """The upstream DSN, pointed at the proxy."""
        auth = self._parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        return urlunsplit(self._parts._replace(netloc=netloc))

    def cut_on(self, marker: bytes) -> asyncio.Event:
        """Drop the first server reply containing `marker` and reset its connection."""
        self._marker = marker
        self.cut.clear()
        return self.cut

    def partition(self) -> None:
        self._open.clear()

    def heal(self) -> None:
        self._open.set()

    def cut_all(self) -> int:
        pipes = list(self._pipes)
        for pipe in pipes:
            pipe.abort()
        return len(pipes)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            if self._unix is not None:
                up_r, up_w = await asyncio.open_unix_connection(self._unix)
            else:
                up_r, up_w = await asyncio.open_connection(self._host, self._port)
        except OSError:
            client_w.transport.abort()
            return
        self.connections += 1
        pipe = _Pipe(client_w, up_w)
        self._pipes.add(pipe)
        try:
            await asyncio.gather(
                self._pump(pipe, client_r, up_w, inspect=False),
                self._pump(pipe, up_r, client_w, inspect=True),
            )
        finally:
            pipe.abort()
            self._pipes.discard(pipe)

    async def _pump(
        self,
        pipe: _Pipe,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        inspect: bool,
    ) -> None:
        tail = b""
        try:
            while not pipe.closed:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                await self._open.wait()
                marker = self._marker
                if inspect and marker is not None and marker in tail + chunk:
                    self._marker = None
                    pipe.abort()
                    self.cut.set()
                    return
                if inspect and marker is not None:
                    tail = (tail + chunk)[-len(marker) :]
                writer.write(chunk)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            pipe.abort()


class _Pipe:
    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self._writers = (client, upstream)
        self.closed = False

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        for writer in self._writers:
            with contextlib.suppress(Exception):
                writer.transport.abort()
