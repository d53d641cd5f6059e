"""Applies the append-only SQL migrations under an advisory lock."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.resources import files

import asyncpg
import structlog

from jobrunner.core.errors import MigrationError, SchemaMissing, SchemaOutdated

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


async def migrate(conn: asyncpg.Connection) -> list[Migration]:
    """Apply pending migrations in one transaction; return the ones applied.

    Concurrent callers queue on the advisory lock, so the second one finds nothing to do.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(_CREATE_TABLE)
        rows = await conn.fetch("SELECT version, checksum FROM jobrunner_migrations")
        applied = {r["version"]: r["checksum"] for r in rows}
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
        for migration in pending:
            try:
                await conn.execute(migration.sql)
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"migration {migration.name!r} failed: {exc}") from None
            await conn.execute(
                "INSERT INTO jobrunner_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
            log.info("migration.applied", version=migration.version, name=migration.name)
        unknown = set(applied) - {m.version for m in available()}
        if unknown:
            log.warning("migration.newer_schema", versions=sorted(unknown))
        return pending


async def schema_version(conn: asyncpg.Connection) -> int:
    try:
        return int(
            await conn.fetchval("SELECT coalesce(max(version), 0) FROM jobrunner_migrations")
        )
    except asyncpg.UndefinedTableError:
        return 0


async def verify(conn: asyncpg.Connection) -> None:
    """Raise unless the schema is the one this version of jobrunner needs."""
    version = await schema_version(conn)
    if version == 0:
        raise SchemaMissing()
    if version < LATEST:
        raise SchemaOutdated(
            f"the jobrunner schema is at version {version} but this jobrunner needs {LATEST}, "
            "run 'jobrunner migrate'"
        )
