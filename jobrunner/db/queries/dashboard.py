"""Statements of the dashboard: the last hour's throughput and the jobs cron slots made
(its job listings and bulk actions are the job filter's, in `bulk`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from jobrunner.db.queries.jobs import Conn, _fetch, _sql

WEB_THROUGHPUT = _sql("web_throughput")
WEB_JOBS_BY_UNIQUE_KEY = _sql("web_jobs_by_unique_key")


async def web_throughput(conn: Conn, since: datetime) -> list[tuple[datetime, str, int]]:
    """(minute, state, count) of the jobs finished since `since`."""
    rows = await _fetch(conn, WEB_THROUGHPUT, since)
    return [(row["minute"], row["state"], int(row["n"])) for row in rows]


async def web_jobs_by_unique_key(conn: Conn, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
    """unique key -> (job id, state), for the keys some job holds."""
    rows = await _fetch(conn, WEB_JOBS_BY_UNIQUE_KEY, list(keys))
    return {row["unique_key"]: (row["id"], row["state"]) for row in rows}
