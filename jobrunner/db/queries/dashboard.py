"""Statements of the dashboard: one job filter for listing, counting and bulk actions, and
the last hour's throughput."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobrunner.core.job import Job
from jobrunner.db.queries.jobs import Conn, _fetch, _sql, readable

WEB_LIST_JOBS = _sql("web_list_jobs")
WEB_LIST_JOBS_OLDEST = _sql("web_list_jobs_oldest")
WEB_COUNT_JOBS = _sql("web_count_jobs")
WEB_RETRY_JOBS = _sql("web_retry_jobs")
WEB_CANCEL_JOBS = _sql("web_cancel_jobs")
WEB_DELETE_JOBS = _sql("web_delete_jobs")
WEB_THROUGHPUT = _sql("web_throughput")


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs a listing or a bulk action covers; None (or empty) matches any.

    `args_text` is a substring of the args' JSON text; `args_json` a JSON object the args
    must contain (`{"user_id": 7}`, nested objects too).
    """

    states: tuple[str, ...] = ()
    queue: str | None = None
    worker: str | None = None
    tag: str | None = None
    args_text: str | None = None
    args_json: dict[str, Any] | None = None
    inserted_after: datetime | None = None
    inserted_before: datetime | None = None

    def params(self) -> tuple[Any, ...]:
        """The statements' $1..$8, in order."""
        return (
            list(self.states) or None,
            self.queue,
            self.worker,
            self.tag,
            self.args_text,
            None if self.args_json is None else json.dumps(self.args_json),
            self.inserted_after,
            self.inserted_before,
        )


async def web_list_jobs(
    conn: Conn, where: JobFilter, *, cursor: int | None, limit: int
) -> list[Job]:
    """A page of matching jobs, newest first, below `cursor` (keyset pagination)."""
    rows = await _fetch(conn, WEB_LIST_JOBS, *where.params(), cursor, limit)
    return [readable(row) for row in rows]


async def web_list_jobs_oldest(
    conn: Conn, where: JobFilter, *, cursor: int | None, limit: int
) -> list[Job]:
    """A page of matching jobs, oldest first, above `cursor` (keyset pagination)."""
    rows = await _fetch(conn, WEB_LIST_JOBS_OLDEST, *where.params(), cursor, limit)
    return [readable(row) for row in rows]


async def web_count_jobs(conn: Conn, where: JobFilter, *, up_to: int) -> int:
    """How many jobs match, counted up to `up_to`."""
    rows = await _fetch(conn, WEB_COUNT_JOBS, *where.params(), up_to)
    return int(rows[0]["n"])


async def web_retry_jobs(conn: Conn, where: JobFilter, ids: Sequence[int] | None) -> list[int]:
    """Make matching jobs (of `ids`, or all) available now, except executing ones."""
    rows = await _fetch(conn, WEB_RETRY_JOBS, *where.params(), _ids(ids))
    return [row["id"] for row in rows]


async def web_cancel_jobs(conn: Conn, where: JobFilter, ids: Sequence[int] | None) -> list[int]:
    """Cancel matching jobs (of `ids`, or all) that have not finished."""
    rows = await _fetch(conn, WEB_CANCEL_JOBS, *where.params(), _ids(ids))
    return [row["id"] for row in rows]


async def web_delete_jobs(conn: Conn, where: JobFilter, ids: Sequence[int] | None) -> list[int]:
    """Delete matching jobs (of `ids`, or all), except executing ones."""
    rows = await _fetch(conn, WEB_DELETE_JOBS, *where.params(), _ids(ids))
    return sorted(row["id"] for row in rows)


async def web_throughput(conn: Conn) -> list[tuple[datetime, str, int]]:
    """(minute, state, count) of the jobs finished in the last hour."""
    rows = await _fetch(conn, WEB_THROUGHPUT)
    return [(row["minute"], row["state"], int(row["n"])) for row in rows]


def _ids(ids: Sequence[int] | None) -> list[int] | None:
    return None if ids is None else [int(i) for i in ids]


WEB_JOBS_BY_UNIQUE_KEY = _sql("web_jobs_by_unique_key")


async def web_jobs_by_unique_key(conn: Conn, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
    """unique key -> (job id, state), for the keys some job holds."""
    rows = await _fetch(conn, WEB_JOBS_BY_UNIQUE_KEY, list(keys))
    return {row["unique_key"]: (row["id"], row["state"]) for row in rows}
