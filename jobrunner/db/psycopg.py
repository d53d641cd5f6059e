"""psycopg 3 under jobrunner's statements: the `$1` parameters of sql/*.sql as they are
(psycopg's raw cursors take PostgreSQL's own placeholders), rows read like asyncpg's, and
the database's errors translated as `_queries` translates asyncpg's."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

from jobrunner.core.config import configured_schema
from jobrunner.core.errors import (
    ConfigError,
    DatabaseUnavailable,
    InvalidConnection,
    InvalidJob,
    JobRunnerError,
    MigrationError,
    SchemaMissing,
)
from jobrunner.core.extras import require
from jobrunner.core.schema import qualify
from jobrunner.db.connection import DIRECT, POOL_SETTINGS, Reach, _redact_dsn, _scrub

psycopg = require("psycopg", "psycopg")

# SQLSTATEs: a missing table or type means an unmigrated database; a check or data error
# means a value the schema refuses (asyncpg's UndefinedTableError, CheckViolationError, ...).
_SCHEMA_MISSING = {"42P01", "42704"}
_REFUSED_CLASS = "22"
_CHECK_VIOLATION = "23514"


class Row:
    """A result row read by column name or position, as an asyncpg Record is."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: dict[str, int], values: Sequence[Any]) -> None:
        self._names = names
        self._values = values

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self._values[self._names[key]]
        return self._values[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    names = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: Row(names, values)


def translate(exc: Exception) -> Exception:
    """The jobrunner error for a database error, or `exc` itself."""
    state = getattr(exc, "sqlstate", None) or ""
    if state in _SCHEMA_MISSING:
        return SchemaMissing()
    if state == _CHECK_VIOLATION or state.startswith(_REFUSED_CLASS):
        return InvalidJob(f"the database refused the job: {exc}")
    if isinstance(exc, psycopg.OperationalError):
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return DatabaseUnavailable(f"the database connection failed: {reason}")
    return exc


def check_usable(conn: Any) -> None:
    """Raise InvalidConnection for a connection that is closed, busy or in a failed
    transaction: a statement there would fail, or write outside the caller's transaction."""
    status = psycopg.pq.TransactionStatus
    if conn.closed:
        raise InvalidConnection("the connection is closed; pass an open one")
    state = conn.info.transaction_status
    if state == status.INERROR:
        raise InvalidConnection(
            "the connection's transaction has failed; roll it back before inserting jobs"
        )
    if state == status.ACTIVE:
        raise InvalidConnection("the connection is running another statement; wait for it")


class SyncConn:
    """A psycopg Connection taking jobrunner's statements, put in `schema` (`qualify`)."""

    __slots__ = ("raw", "schema")

    def __init__(self, raw: Any, schema: str | None = None) -> None:
        self.raw = raw
        self.schema = (
            configured_schema() if schema is None else schema
        )  # None: the settings' schema

    def fetch(self, query: str, *args: Any) -> list[Any]:
        try:
            with psycopg.RawCursor(self.raw, row_factory=_row_factory) as cursor:
                cursor.execute(qualify(query, self.schema), args or None)
                return cursor.fetchall() if cursor.description is not None else []
        except psycopg.Error as exc:
            raise translate(exc) from exc

    def in_transaction(self) -> bool:
        return bool(self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE)


class AsyncConn:
    """A psycopg AsyncConnection taking jobrunner's statements like an asyncpg connection,
    put in `schema` (`qualify`)."""

    __slots__ = ("raw", "schema")

    def __init__(self, raw: Any, schema: str | None = None) -> None:
        self.raw = raw
        self.schema = (
            configured_schema() if schema is None else schema
        )  # None: the settings' schema

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Any]:  # noqa: ASYNC109
        try:
            async with psycopg.AsyncRawCursor(self.raw, row_factory=_row_factory) as cursor:
                await cursor.execute(qualify(query, self.schema), args or None)
                return await cursor.fetchall() if cursor.description is not None else []
        except psycopg.Error as exc:
            raise translate(exc) from exc

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        rows = await self.fetch(query, *args)
        return rows[0] if rows else None

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:  # noqa: ASYNC109
        await self.fetch(query, *args)
        return ""

    def is_in_transaction(self) -> bool:
        return bool(self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE)


# The settings of the sync client's own connections, as the async client's pool sends them.
_OPTIONS = " ".join(f"-c {name}={value}" for name, value in POOL_SETTINGS.items())


def _connect_kwargs(reach: Reach) -> dict[str, Any]:
    """Behind a pooler: no setting sent at connect (refused) and no server-side prepared
    statement (psycopg prepares a statement run five times)."""
    if reach.pgbouncer:
        return {"autocommit": True, "prepare_threshold": None, "application_name": "jobrunner"}
    return {"autocommit": True, "options": _OPTIONS}


def _failure(dsn: str, exc: Exception) -> JobRunnerError:
    if isinstance(exc, psycopg.ProgrammingError):  # psycopg's word for a malformed conninfo
        return ConfigError(
            f"invalid database url {_redact_dsn(dsn)!r}: {_scrub(exc, dsn)}; "
            "give one like 'postgresql://user@localhost:5432/dbname'"
        )
    return DatabaseUnavailable(f"cannot connect to {_redact_dsn(dsn)!r}: {_scrub(exc, dsn)}")


def connect(dsn: str, reach: Reach = DIRECT) -> Any:
    """One autocommit connection with jobrunner's settings."""
    try:
        return psycopg.connect(dsn, connect_timeout=10, **_connect_kwargs(reach))
    except (psycopg.Error, OSError) as exc:
        raise _failure(dsn, exc) from None


def create_pool(dsn: str, *, max_size: int, reach: Reach = DIRECT) -> Any:
    """A psycopg_pool ConnectionPool of autocommit connections with jobrunner's settings."""
    psycopg_pool = require("psycopg_pool", "psycopg")
    connect(dsn, reach).close()  # a bad url or an unreachable server fails here, saying why
    pool = psycopg_pool.ConnectionPool(
        dsn,
        min_size=1,
        max_size=max_size,
        kwargs=_connect_kwargs(reach),
        open=False,
        timeout=10,
        name="jobrunner",
    )
    try:
        pool.open(wait=True, timeout=10)
    except psycopg_pool.PoolTimeout:
        pool.close()
        raise DatabaseUnavailable(f"cannot connect to {_redact_dsn(dsn)!r}") from None
    return pool


@contextmanager
def borrowed(source: Any, schema: str | None = None) -> Iterator[SyncConn]:
    """A connection of `source`: a psycopg_pool pool, or one psycopg connection (psycopg
    serialises the statements of threads that share it)."""
    if isinstance(source, psycopg.Connection):
        yield SyncConn(source, schema)
        return
    with source.connection() as raw:
        yield SyncConn(raw, schema)


def migrate(raw: Any, *, in_transaction: bool = False, schema: str | None = None) -> list[Any]:
    """Apply jobrunner's pending migrations on a psycopg connection: in a transaction of
    their own, or `in_transaction` of the caller's (a Django migration's); in `schema`, by
    default the settings' (config file or JOBRUNNER_SCHEMA)."""
    if schema is None:
        schema = configured_schema()
    with nullcontext() if in_transaction else raw.transaction():
        return _migrate_steps(raw, schema)


def _migrate_steps(raw: Any, schema: str) -> list[Any]:
    from jobrunner.db.migrate import plan

    steps = plan(schema)
    step = next(steps)
    while True:
        try:
            with psycopg.RawCursor(raw, row_factory=_row_factory) as cursor:
                cursor.execute(step.sql, step.args or None)
                rows = cursor.fetchall() if step.rows else []
        except psycopg.Error as exc:
            if step.failure is None:
                raise
            raise MigrationError(f"{step.failure}: {exc}") from None
        try:
            step = steps.send(rows)
        except StopIteration as done:
            return list(done.value)
