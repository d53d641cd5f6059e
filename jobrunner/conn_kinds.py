"""The caller's own connections (`conn=`): which kinds each client takes, and the checks
that keep a job inside the caller's transaction, on the client's database."""

from __future__ import annotations

import inspect
import weakref
from typing import Any

from jobrunner.core.errors import InvalidConnection
from jobrunner.core.schema import DEFAULT_SCHEMA
from jobrunner.db import queries as _queries
from jobrunner.db.connection import Qualified
from jobrunner.db.queries import sync as _sync_queries

# database identity (name, port, server start) of each caller's connection, once looked up
_identities: weakref.WeakKeyDictionary[Any, tuple[Any, ...]] = weakref.WeakKeyDictionary()

_ASYNC_KINDS = (
    "an asyncpg connection, a psycopg AsyncConnection, "
    "or a SQLAlchemy AsyncConnection or AsyncSession"
)
_SYNC_KINDS = "a psycopg Connection, a SQLAlchemy Connection or Session, or a Django connection"


def _library(conn: Any) -> str:
    return type(conn).__module__.partition(".")[0]


def _is_psycopg(conn: Any, name: str) -> bool:
    return _library(conn) == "psycopg" and any(c.__name__ == name for c in type(conn).__mro__)


def _mismatch(expected: tuple[Any, ...], found: tuple[Any, ...]) -> InvalidConnection:
    where = "another server" if expected[1:] != found[1:] else f"database {found[0]!r}"
    return InvalidConnection(
        f"the connection is to {where}, not the client's database {expected[0]!r}: "
        "jobs written there would never run; pass a connection to the client's database"
    )


async def async_target(
    conn: Any, expected: tuple[Any, ...] | None, schema: str = DEFAULT_SCHEMA
) -> _queries.Conn:
    """`conn` as the async client runs its statements on it (in `schema`)."""
    library = _library(conn)
    if library == "asyncpg":
        _check_asyncpg(conn)
        return Qualified.wrap(conn, schema)  # type: ignore[no-any-return]
    if library == "sqlalchemy":
        from jobrunner.contrib import sqlalchemy

        raw = await sqlalchemy.async_driver_connection(conn)
        if _library(raw) == "asyncpg":
            await _check_async(raw, raw, expected)
            return Qualified.wrap(raw, schema)  # type: ignore[no-any-return]
        return await async_target(raw, expected, schema)
    if _is_psycopg(conn, "AsyncConnection"):
        from jobrunner.db import psycopg as _psycopg

        _psycopg.check_usable(conn)
        adapted = _psycopg.AsyncConn(conn, schema)
        await _check_async(conn, adapted, expected)
        return adapted
    if _is_psycopg(conn, "Connection") or library in ("django", "sqlalchemy"):
        raise InvalidConnection(
            f"a sync {type(conn).__name__} goes to the sync client (jobrunner.connect_sync); "
            f"the async client takes {_ASYNC_KINDS}"
        )
    if inspect.iscoroutinefunction(getattr(conn, "fetch", None)):
        return Qualified.wrap(conn, schema)  # type: ignore[no-any-return]  # asyncpg's interface
    raise InvalidConnection(f"conn= takes {_ASYNC_KINDS}, got {type(conn).__name__}")


def _check_asyncpg(conn: Any) -> None:
    import asyncpg

    is_closed = getattr(conn, "is_closed", None)  # a pool has none
    try:
        closed = is_closed is not None and is_closed()
    except asyncpg.InterfaceError as exc:  # a pooled connection already released
        raise InvalidConnection(f"the connection cannot be used: {exc}") from None
    if closed:
        raise InvalidConnection("the connection is closed; pass an open one")


async def _check_async(key: Any, conn: Any, expected: tuple[Any, ...] | None) -> None:
    if expected is None:
        return
    found = _identities.get(key)
    if found is None:
        found = _identities[key] = await _queries.database_identity(conn)
    if found != expected:
        raise _mismatch(expected, found)


def sync_target(conn: Any, expected: tuple[Any, ...] | None, schema: str = DEFAULT_SCHEMA) -> Any:
    """`conn` as the sync client runs its statements on it (a `db.psycopg.SyncConn`)."""
    library = _library(conn)
    if library == "sqlalchemy":
        from jobrunner.contrib import sqlalchemy

        return sync_target(sqlalchemy.sync_driver_connection(conn), expected, schema)
    if library == "django":
        from jobrunner.contrib import django

        return sync_target(django.driver_connection(conn), expected, schema)
    if _is_psycopg(conn, "Connection"):
        from jobrunner.db import psycopg as _psycopg

        _psycopg.check_usable(conn)
        adapted = _psycopg.SyncConn(conn, schema)
        if expected is not None:
            found = _identities.get(conn)
            if found is None:
                found = _identities[conn] = _sync_queries.database_identity(adapted)
            if found != expected:
                raise _mismatch(expected, found)
        return adapted
    if library == "asyncpg" or _is_psycopg(conn, "AsyncConnection"):
        raise InvalidConnection(
            f"an async connection ({type(conn).__name__}) goes to the async client "
            f"(jobrunner.connect); the sync client takes {_SYNC_KINDS}"
        )
    raise InvalidConnection(f"conn= takes {_SYNC_KINDS}, got {type(conn).__name__}")
