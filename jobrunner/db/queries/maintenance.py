"""Statements of housekeeping: rebuilding the jobs table's indexes concurrently."""

from __future__ import annotations

from dataclasses import dataclass

from jobrunner.db.queries.jobs import Conn, _fetch, _sql

REINDEX_TARGETS = _sql("reindex_targets")


@dataclass(frozen=True, slots=True)
class IndexTarget:
    name: str  # as REINDEX takes it: from the catalog (regclass), quoted where needed
    invalid: bool
    leftover: bool  # the copy a failed concurrent rebuild left behind


async def reindex_targets(conn: Conn) -> list[IndexTarget]:
    """The jobs table's indexes."""
    rows = await _fetch(conn, REINDEX_TARGETS)
    return [IndexTarget(r["name"], r["invalid"], r["leftover"]) for r in rows]


async def reindex(conn: Conn, target: IndexTarget, *, timeout_s: float) -> None:
    """Rebuild one index without blocking reads or writes (REINDEX ... CONCURRENTLY runs
    outside any transaction; its name comes from the catalog, never from input)."""
    await conn.execute(f"REINDEX INDEX CONCURRENTLY {target.name}", timeout=timeout_s)


async def drop_leftover(conn: Conn, target: IndexTarget, *, timeout_s: float) -> None:
    """Drop the invalid copy a failed concurrent rebuild left behind."""
    assert target.leftover and target.invalid
    await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {target.name}", timeout=timeout_s)
