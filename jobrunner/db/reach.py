"""How statements reach the server: the schema of jobrunner's objects and whether a
transaction pooler sits in between (`Reach`), and the caller's own connections in that
schema (`Qualified`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from jobrunner.core.config import Settings
from jobrunner.core.errors import ConfigError
from jobrunner.core.schema import DEFAULT_SCHEMA, qualify


@dataclass(frozen=True, slots=True)
class Reach:
    """How statements reach the server: the schema jobrunner's objects live in, and whether
    a transaction pooler (PgBouncer) sits in between.

    Behind a pooler every statement is unnamed (no statement cache), no setting is sent at
    connect (the pooler refuses them) and nothing relies on session state.
    """

    schema: str = DEFAULT_SCHEMA
    pgbouncer: bool = False

    @classmethod
    def of(cls, settings: Settings) -> Reach:
        return cls(schema=settings.schema, pgbouncer=settings.pgbouncer)


DIRECT = Reach()


def connect_kwargs(reach: Reach, kwargs: dict[str, Any]) -> dict[str, Any]:
    """asyncpg's connect arguments for `reach`: behind a pooler, no statement cache and no
    setting but application_name (which PgBouncer tracks itself)."""
    if not reach.pgbouncer:
        return kwargs
    settings = kwargs.get("server_settings") or {}
    kept = {k: v for k, v in settings.items() if k == "application_name"}
    return {**kwargs, "server_settings": kept, "statement_cache_size": 0}


class Qualified:
    """The caller's own asyncpg connection (`conn=`) taking jobrunner's statements in
    `schema`; everything else (transactions, state) is the connection's own."""

    __slots__ = ("_conn", "schema")

    def __init__(self, conn: Any, schema: str) -> None:
        self._conn = conn
        self.schema = schema

    @classmethod
    def wrap(cls, conn: Any, schema: str) -> Any:
        """`conn` itself when it already puts statements in `schema`."""
        reach = getattr(conn, "reach", None)
        if schema == DEFAULT_SCHEMA or getattr(reach, "schema", None) == schema:
            return conn
        return cls(conn, schema)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def fetch(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._conn.fetch(qualify(query, self.schema), *args, **kwargs)

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._conn.fetchrow(qualify(query, self.schema), *args, **kwargs)

    async def fetchval(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._conn.fetchval(qualify(query, self.schema), *args, **kwargs)

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._conn.execute(qualify(query, self.schema), *args, **kwargs)

    async def executemany(self, command: str, args: Any, **kwargs: Any) -> Any:
        return await self._conn.executemany(qualify(command, self.schema), args, **kwargs)


def check_reach(conn: Any, schema: str) -> None:
    """ConfigError if `conn`, of a pool the caller gave, is a plain asyncpg connection while
    the settings name another schema than public: its statements would miss the schema."""
    if schema == DEFAULT_SCHEMA or not isinstance(conn, asyncpg.Connection):
        return  # the default, or a view of one connection that qualifies itself
    reach = getattr(conn, "reach", None)
    if getattr(reach, "schema", None) != schema:
        raise ConfigError(
            f"schema = {schema!r} needs jobrunner's own pool (leave pool= out), or a pool made "
            "with jobrunner.db.connection.create_pool(dsn, reach=Reach(schema=...))"
        )
