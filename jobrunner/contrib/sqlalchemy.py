"""SQLAlchemy 2 sessions and connections as `conn=`: the job is written in their transaction.

`client.insert(job, conn=session)` takes a `Session` or `Connection` (sync client) and an
`AsyncSession` or `AsyncConnection` (async client), on the psycopg 3 or asyncpg driver. The
session's transaction is begun if it was not (as any statement through it would), so the job
commits or rolls back with the caller's rows; a connection in AUTOCOMMIT is refused.
"""

from __future__ import annotations

from typing import Any

from jobrunner.core.errors import InvalidConnection
from jobrunner.core.extras import require

sqlalchemy = require("sqlalchemy", "sqlalchemy")
orm = require("sqlalchemy.orm", "sqlalchemy")
ext_asyncio = require("sqlalchemy.ext.asyncio", "sqlalchemy")

_NO_TRANSACTION = (
    "the SQLAlchemy connection is in AUTOCOMMIT: a job written there would commit on its "
    "own; use a connection with a transaction"
)


def _driver(dbapi_connection: Any) -> Any:
    raw = getattr(dbapi_connection, "driver_connection", dbapi_connection)
    module = type(raw).__module__.partition(".")[0]
    if module not in ("psycopg", "asyncpg"):
        raise InvalidConnection(
            f"jobrunner takes SQLAlchemy connections on the psycopg (3) or asyncpg driver, "
            f"got {module!r}; use a 'postgresql+psycopg://' or 'postgresql+asyncpg://' url"
        )
    return raw


def _check_open(conn: Any) -> None:
    if conn.closed or conn.invalidated:
        raise InvalidConnection("the SQLAlchemy connection is closed; pass an open one")


def sync_driver_connection(conn: Any) -> Any:
    """The psycopg connection under a Session or Connection, inside its transaction."""
    if isinstance(conn, orm.Session):
        conn = conn.connection()  # begins the session's transaction if needed
    if not isinstance(conn, sqlalchemy.engine.Connection):
        raise InvalidConnection(
            f"the sync client takes a SQLAlchemy Session or Connection, got {type(conn).__name__}"
        )
    _check_open(conn)
    dbapi_connection = conn.connection.dbapi_connection
    if getattr(dbapi_connection, "autocommit", False):
        raise InvalidConnection(_NO_TRANSACTION)
    if not conn.in_transaction():
        conn.begin()  # what conn.execute() would do: the caller commits it
    return _driver(dbapi_connection)


async def async_driver_connection(conn: Any) -> Any:
    """The asyncpg or psycopg connection under an AsyncSession or AsyncConnection, inside
    its transaction."""
    if isinstance(conn, ext_asyncio.AsyncSession):
        conn = await conn.connection()
    if not isinstance(conn, ext_asyncio.AsyncConnection):
        raise InvalidConnection(
            "the async client takes a SQLAlchemy AsyncSession or AsyncConnection, "
            f"got {type(conn).__name__}"
        )
    _check_open(conn)
    dbapi_connection = (await conn.get_raw_connection()).dbapi_connection
    if getattr(dbapi_connection, "autocommit", False):
        raise InvalidConnection(_NO_TRANSACTION)
    if not conn.in_transaction():
        await conn.begin()
    raw = _driver(dbapi_connection)
    if type(raw).__module__.startswith("asyncpg") and not raw.is_in_transaction():
        # SQLAlchemy's asyncpg adapter opens the database transaction at its first statement
        await conn.exec_driver_sql("SELECT 1")
        if not raw.is_in_transaction():
            raise InvalidConnection(_NO_TRANSACTION)
    return raw
