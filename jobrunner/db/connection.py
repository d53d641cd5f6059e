"""Finding the database: resolution order, the embedded server, pools and error translation;
connections that honour a `Reach` (`db.reach`: schema, PgBouncer)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import asyncpg

from jobrunner.core.config import Settings
from jobrunner.core.errors import ConfigError, DatabaseUnavailable, PoolTimeout
from jobrunner.core.schema import DEFAULT_SCHEMA, qualify
from jobrunner.db.reach import DIRECT as DIRECT
from jobrunner.db.reach import Qualified as Qualified
from jobrunner.db.reach import Reach as Reach
from jobrunner.db.reach import check_reach as check_reach
from jobrunner.db.reach import connect_kwargs

# The password runs to the first @ that a host (maybe empty: a unix socket), a port and the end
# of the URL follow, so that @ / ? # pasted unencoded into a password are hidden too.
_URL_PASSWORD = re.compile(
    r"(?P<head>[a-z][a-z0-9+.-]*://[^:/?#\s]*:)(?P<pw>.*?)"
    r"(?=@(?:\[[0-9a-f:.]*\]|[a-z0-9._%-]*)(?::[0-9]*)?(?:[/?#'\"\s,;)]|$))",
    re.I,
)
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'[^']*'|\S+)", re.I)


def redact(text: str) -> str:
    """`text` with any DSN password replaced by ***."""
    text = _URL_PASSWORD.sub(lambda m: m["head"] + "***", text)
    return _KV_PASSWORD.sub(lambda m: m["head"] + "***", text)


def embedded_dsn(data_dir: str | Path) -> str:
    """Start (or join) the embedded PostgreSQL under `data_dir` and return its URL; the
    server is reachable only by this user (see `jobrunner.db.embedded`)."""
    from jobrunner.db import embedded

    return embedded.start(data_dir)


async def resolve_dsn(database_url: str | None, data_dir: str | Path = ".jobrunner") -> str:
    """The given URL, else the embedded server's (started in a thread: initdb is slow)."""
    if database_url:
        return database_url
    return await asyncio.to_thread(embedded_dsn, data_dir)


def _redact_dsn(dsn: str) -> str:
    """`dsn` with its password hidden: all between `user:` and the last @ (the DSN is one URL)."""
    scheme, sep, rest = dsn.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return redact(dsn)
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{host}"


def _scrub(exc: BaseException, dsn: str) -> str:
    """A parser's or driver's message about `dsn` without any piece of its password: a URL
    with / ? # in the password is split there, and the pieces are echoed ('pa')."""
    reason = str(exc)
    userinfo = dsn.partition("://")[2].rpartition("@")[0]
    secret = userinfo.partition(":")[2]
    if secret:
        pieces = [p for p in re.split(r"[/?#@:]", secret) if p]
        for piece in sorted({secret, *(p for p in pieces if len(p) >= 3)}, key=len, reverse=True):
            reason = reason.replace(piece, "***")
        for piece in pieces:
            reason = reason.replace(f"'{piece}'", "'***'")
    return redact(reason) or type(exc).__name__


def _unavailable(dsn: str, exc: BaseException) -> DatabaseUnavailable:
    return DatabaseUnavailable(f"cannot connect to {_redact_dsn(dsn)!r}: {_scrub(exc, dsn)}")


def _malformed(dsn: str, exc: BaseException) -> ConfigError:
    reason = _scrub(exc, dsn)
    return ConfigError(
        f"invalid database url {_redact_dsn(dsn)!r}: {reason}; "
        "give one like 'postgresql://user@localhost:5432/dbname'"
    )


# A malformed DSN (asyncpg's ClientConfigurationError is a ValueError; a port out of range
# is an OverflowError) is bad input; anything else that fails to connect is unavailability.
_MALFORMED_ERRORS: tuple[type[BaseException], ...] = (ValueError, OverflowError)
_CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


def _check_url(dsn: str) -> None:
    """Refuse what asyncpg would quietly misread: a port out of range wraps around."""
    if "://" not in dsn:
        return
    try:
        urlsplit(dsn).port  # noqa: B018 - parsing it is the check
    except ValueError as exc:
        raise _malformed(dsn, exc) from None


async def connect(dsn: str, reach: Reach = DIRECT, **kwargs: Any) -> asyncpg.Connection:
    """One connection whose statements honour `reach`; a malformed DSN is a ConfigError,
    other failures DatabaseUnavailable."""
    _check_url(dsn)
    try:
        conn = await asyncpg.connect(
            dsn,
            timeout=10,
            connection_class=_connection_class(reach),
            **connect_kwargs(reach, kwargs),
        )
    except _MALFORMED_ERRORS as exc:
        raise _malformed(dsn, exc) from None
    except _CONNECT_ERRORS as exc:
        raise _unavailable(dsn, exc) from None
    conn.reach = reach
    return conn


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """A connection of jobrunner's that knows how it reaches the server and when only
    jobrunner's statements used it."""

    __slots__ = ("_statements_only", "reach")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._statements_only = False
        self.reach = DIRECT

    def mark_statements_only(self) -> None:
        self._statements_only = True

    def take_statements_only(self) -> bool:
        used, self._statements_only = self._statements_only, False
        return used


class SchemaConnection(PooledConnection):
    """A connection of jobrunner's whose every statement goes in its schema (`core.schema`'s
    `qualify`: the one place jobrunner's SQL meets the configured schema). Only a schema
    other than public uses it, so the default path pays nothing."""

    __slots__ = ()

    async def fetch(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await super().fetch(qualify(query, self.reach.schema), *args, **kwargs)

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await super().fetchrow(qualify(query, self.reach.schema), *args, **kwargs)

    async def fetchval(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await super().fetchval(qualify(query, self.reach.schema), *args, **kwargs)

    async def fetchmany(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await super().fetchmany(qualify(query, self.reach.schema), *args, **kwargs)

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await super().execute(qualify(query, self.reach.schema), *args, **kwargs)

    async def executemany(self, command: str, args: Any, **kwargs: Any) -> Any:
        return await super().executemany(qualify(command, self.reach.schema), args, **kwargs)

    async def prepare(self, query: str, **kwargs: Any) -> Any:
        return await super().prepare(qualify(query, self.reach.schema), **kwargs)

    def cursor(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return super().cursor(qualify(query, self.reach.schema), *args, **kwargs)


def _connection_class(reach: Reach) -> type[PooledConnection]:
    return PooledConnection if reach.schema == DEFAULT_SCHEMA else SchemaConnection


async def _reset(conn: asyncpg.Connection) -> None:
    """Pool release: asyncpg's reset query, unless only jobrunner's statements ran.

    Those are single statements that leave no session state (no SET, LISTEN, cursor or
    session advisory lock), and asyncpg has already rolled back any open transaction, so
    the reset's round trip, on the path of every fetch, ack and insert, buys nothing.
    A connection used for anything else (a worker's `pool.acquire()`) gets the full reset.
    """
    if isinstance(conn, PooledConnection) and (conn.take_statements_only() or conn.reach.pgbouncer):
        return  # behind a pooler, the reset would run on whichever server comes next
    query = conn.get_reset_query()
    if query:
        await conn.execute(query)


async def fetch(conn: Any, query: str, *args: Any) -> list[Any]:
    """`conn.fetch(query, *args)` for one of jobrunner's statements; on a pool, the
    connection goes back without the reset round trip (see `_reset`)."""
    rows: list[Any]
    if not isinstance(conn, asyncpg.Pool):
        rows = await conn.fetch(query, *args)
        return rows
    async with conn.acquire() as pooled:
        rows = await pooled.fetch(query, *args)
        mark = getattr(pooled, "mark_statements_only", None)
        if mark is not None:
            mark()
    return rows


# The settings of jobrunner's own pool (a pool passed to `connect(pool=...)` keeps its own).
POOL_SETTINGS = {
    "application_name": "jobrunner",
    # JIT compiling costs tens of milliseconds and never pays off for jobrunner's short
    # statements; a large insert_all's estimate is high enough to trigger it.
    "jit": "off",
    # The jobs table is hot and cached. At the default (4, a spinning disk's cost) the
    # cached generic plans of the claim and the ack scan the whole table rather than probe
    # the primary key while it holds fewer than some tens of thousands of rows: 2.3 ms
    # instead of 0.7 ms for ten acks and ten claims on 3,000 rows.
    "random_page_cost": "1.1",
}


POOL_TIMEOUT_S = 10.0


class _Acquire:
    """`pool.acquire()` with the pool's bounded wait, which raises PoolTimeout."""

    __slots__ = ("_context", "_pool", "_timeout_s")

    def __init__(self, pool: Pool, timeout_s: float) -> None:
        self._pool = pool
        self._timeout_s = timeout_s
        self._context = asyncpg.Pool.acquire(pool, timeout=timeout_s)

    async def __aenter__(self) -> Any:
        try:
            return await self._context.__aenter__()
        except TimeoutError:
            raise self._pool.timed_out(self._timeout_s) from None

    async def __aexit__(self, *exc: object) -> None:
        await self._context.__aexit__(*exc)

    def __await__(self) -> Any:
        return self._acquired().__await__()

    async def _acquired(self) -> Any:
        try:
            return await self._context
        except TimeoutError:
            raise self._pool.timed_out(self._timeout_s) from None


class Pool(asyncpg.Pool):  # type: ignore[misc]
    """asyncpg's pool whose `acquire()` waits at most `acquire_timeout_s` (a worker's own
    `pool.acquire()` included): a pool that running jobs hold entirely makes the next
    acquisition fail with PoolTimeout instead of hanging."""

    def __init__(self, *args: Any, acquire_timeout_s: float, name: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout_s = acquire_timeout_s
        self.name = name

    def acquire(self, *, timeout: float | None = None) -> Any:
        return _Acquire(self, self.acquire_timeout_s if timeout is None else timeout)

    def timed_out(self, timeout_s: float) -> PoolTimeout:
        return PoolTimeout(
            f"no connection of the {self.name} pool came free within {timeout_s:g}s "
            f"(all {self.get_max_size()} in use): hold a connection of client.pool only "
            "briefly, or raise pool_size"
        )


async def create_pool(
    dsn: str,
    *,
    max_size: int = 10,
    min_size: int = 1,
    acquire_timeout_s: float = POOL_TIMEOUT_S,
    application_name: str = "jobrunner",
    name: str = "jobrunner",
    reach: Reach = DIRECT,
) -> asyncpg.Pool:
    """A pool whose acquisitions wait at most `acquire_timeout_s` and whose statements honour
    `reach`; a malformed DSN is a ConfigError, other connect failures DatabaseUnavailable."""
    _check_url(dsn)

    async def init(conn: asyncpg.Connection) -> None:
        conn.reach = reach

    options = connect_kwargs(
        reach, {"server_settings": {**POOL_SETTINGS, "application_name": application_name}}
    )
    try:
        pool = await Pool(
            dsn,
            min_size=min(min_size, max_size),
            max_size=max_size,
            max_queries=50_000,
            max_inactive_connection_lifetime=300.0,
            loop=None,
            connection_class=_connection_class(reach),
            record_class=asyncpg.Record,
            reset=_reset,
            timeout=10,
            command_timeout=60,
            init=init,
            acquire_timeout_s=acquire_timeout_s,
            name=name,
            **options,
        )
    except _MALFORMED_ERRORS as exc:
        raise _malformed(dsn, exc) from None
    except _CONNECT_ERRORS as exc:
        raise _unavailable(dsn, exc) from None
    assert pool is not None
    return pool


async def close_pool(pool: asyncpg.Pool, timeout_s: float = 5.0) -> None:
    """Close gracefully, terminating connections that do not close in time."""
    try:
        await asyncio.wait_for(pool.close(), timeout_s)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        pool.terminate()


class Connected(Protocol):
    """A connected client as the engine and the operations see it: its pool, settings and URL.

    `jobrunner.Client` is one; the layers below it take this, so they never import it.
    """

    settings: Settings

    @property
    def pool(self) -> asyncpg.Pool: ...

    @property
    def dsn(self) -> str: ...

    @property
    def testing(self) -> str | None: ...
