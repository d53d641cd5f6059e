"""Applies the append-only SQL migrations under an advisory lock."""

from __future__ import annotations

import hashlib
from collections.abc import Generator
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import asyncpg
import structlog

from jobrunner.core.errors import MigrationError, SchemaMissing, SchemaOutdated
from jobrunner.core.schema import DEFAULT_SCHEMA, qualify, quote_ident

log = structlog.get_logger("jobrunner.migrate")

# Any constant works; it only has to be the same for every jobrunner process.
_LOCK_KEY = 0x6A6F6272756E6E  # "jobrunn"

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS jobrunner_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    """The migrations shipped with this version of jobrunner, in order."""
    found = []
    for entry in files("jobrunner.db").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append(Migration(version, entry.name.removesuffix(".sql"), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


LATEST = available()[-1].version


@dataclass(frozen=True, slots=True)
class Step:
    """One statement of a migration run; `failure` names what failed if it does."""

    sql: str
    args: tuple[Any, ...] = ()
    failure: str | None = None
    rows: bool = False  # the plan reads its rows


# The statements of a migration run (the driver runs each and sends back its rows), so that
# asyncpg (`migrate`) and psycopg (`db.psycopg.migrate`, Django's migration) share them.
Plan = Generator[Step, list[Any], list[Migration]]


def _prologue(schema: str) -> list[str]:
    """Outside public: create the schema, and resolve the migrations' unqualified names in it
    (for this transaction only; `SET LOCAL` passes a transaction pooler)."""
    if schema == DEFAULT_SCHEMA:
        return []
    quoted = quote_ident(schema)
    return [f"CREATE SCHEMA IF NOT EXISTS {quoted}", f"SET LOCAL search_path TO {quoted}"]


def _pending(applied: dict[int, str]) -> list[Migration]:
    pending = []
    for migration in available():
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                raise MigrationError(
                    f"migration {migration.name!r} was changed after it was applied; "
                    "shipped migrations must never be edited"
                )
            continue
        pending.append(migration)
    return pending


_RECORD = "INSERT INTO jobrunner_migrations (version, name, checksum) VALUES ($1, $2, $3)"


def plan(schema: str = DEFAULT_SCHEMA) -> Plan:
    """Take the lock, read what is applied, apply the rest; return the migrations applied.

    Concurrent callers queue on the advisory lock, so the second one finds nothing to do.
    The driver runs it inside one transaction. Every statement is already in `schema`.
    """
    yield Step("SELECT pg_advisory_xact_lock($1)", (_LOCK_KEY,))
    for sql in _prologue(schema):
        yield Step(sql)
    yield Step(qualify(_CREATE_TABLE, schema))
    rows = yield Step(qualify(APPLIED, schema), rows=True)
    applied = {r["version"]: r["checksum"] for r in rows}
    pending = _pending(applied)
    for migration in pending:
        failure = f"migration {migration.name!r} failed"
        yield Step(qualify(migration.sql, schema), failure=failure)
        yield Step(
            qualify(_RECORD, schema), (migration.version, migration.name, migration.checksum)
        )
        log.info("migration.applied", version=migration.version, name=migration.name)
    unknown = set(applied) - {m.version for m in available()}
    if unknown:
        log.warning("migration.newer_schema", versions=sorted(unknown))
    return pending


APPLIED = "SELECT version, checksum FROM jobrunner_migrations"


def script(applied: dict[int, str], schema: str = DEFAULT_SCHEMA) -> str:
    """The SQL that brings a schema at `applied` (version -> checksum) up to date: what
    `migrate` would run, for review or for another migration tool, to run in one
    transaction (as Alembic, Django and Flyway run a migration; `psql -1 -f`)."""
    pending = _pending(applied)
    if not pending:
        return ""
    parts = [*_prologue(schema), qualify(_CREATE_TABLE, schema).strip()]
    for m in pending:
        sql = qualify(m.sql, schema)
        parts.append(f"-- {m.name}\n" + sql.strip().rstrip(";"))
        record = qualify(_RECORD, schema).replace("$1, $2, $3", "{}, '{}', '{}'")
        parts.append(record.format(m.version, m.name, m.checksum))
    head = (
        f"-- jobrunner migrations {pending[0].version} to {pending[-1].version} for schema "
        f"{quote_ident(schema)}: run them in one transaction\n"
    )
    return head + ";\n\n".join(parts) + ";\n"


async def applied_versions(conn: asyncpg.Connection) -> dict[int, str]:
    """version -> checksum of the migrations applied (empty with no schema)."""
    try:
        rows = await conn.fetch(APPLIED)
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return {}
    return {r["version"]: r["checksum"] for r in rows}


async def migrate(conn: asyncpg.Connection, schema: str = DEFAULT_SCHEMA) -> list[Migration]:
    """Apply pending migrations in one transaction, in `schema`; return the ones applied."""
    async with conn.transaction():
        steps = plan(schema)
        step = next(steps)
        while True:
            try:
                if step.rows:
                    rows = await conn.fetch(step.sql, *step.args)
                else:
                    rows = []
                    await conn.execute(step.sql, *step.args)
            except asyncpg.PostgresError as exc:
                if step.failure is None:
                    raise
                raise MigrationError(f"{step.failure}: {exc}") from None
            try:
                step = steps.send(rows)
            except StopIteration as done:
                applied: list[Migration] = done.value
                return applied


SCHEMA_VERSION = "SELECT coalesce(max(version), 0) AS version FROM jobrunner_migrations"


async def schema_version(conn: asyncpg.Connection) -> int:
    try:
        return int(await conn.fetchval(SCHEMA_VERSION))
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return 0


async def verify(conn: asyncpg.Connection) -> None:
    """Raise unless the schema is the one this version of jobrunner needs."""
    reach = getattr(conn, "reach", None)
    check_version(await schema_version(conn), getattr(reach, "schema", DEFAULT_SCHEMA))


def check_version(version: int, schema: str = DEFAULT_SCHEMA) -> None:
    """Raise unless `version` (0: no schema) is the one this version of jobrunner needs."""
    where, flag = ("", "") if schema == DEFAULT_SCHEMA else (f" {schema!r}", f" --schema {schema}")
    if version == 0:
        if not where:
            raise SchemaMissing()
        raise SchemaMissing(
            f"jobrunner tables missing in schema{where}, run 'jobrunner{flag} migrate'"
        )
    if version < LATEST:
        raise SchemaOutdated(
            f"the jobrunner schema{where} is at version {version} but this jobrunner needs "
            f"{LATEST}, run 'jobrunner{flag} migrate'"
        )
