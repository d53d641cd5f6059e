"""What the pages and the JSON API show: job filters from a query string, job pages, cron
entries (the overview, shared by every viewer, is in `live`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from croniter import croniter

from jobrunner.core.errors import InvalidFilter
from jobrunner.core.job import Job, JobState
from jobrunner.core.job_filter import JobFilter
from jobrunner.db import queries as _queries
from jobrunner.db.connection import redact
from jobrunner.db.queries import dashboard as _dashboard
from jobrunner.plugins.cron import entry_slot_key

if TYPE_CHECKING:
    from jobrunner.db.connection import Connected

STATES = tuple(s.value for s in JobState)
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


class BadFilter(ValueError):
    """a filter value the dashboard cannot use."""


async def cron_entries(client: Connected, now: datetime) -> list[dict[str, Any]]:
    """Each crontab entry with its last slot (and the job it made) and its next slot."""
    entries = client.settings.crontab
    if not entries:
        return []
    last = await _queries.cron_progress(client.pool, [e.key for e in entries])
    keys = [entry_slot_key(e.key, last[e.key]) for e in entries if e.key in last]
    jobs = await _dashboard.web_jobs_by_unique_key(client.pool, keys)
    out = []
    for entry in entries:
        slot = last.get(entry.key)
        job = jobs.get(entry_slot_key(entry.key, slot)) if slot else None
        out.append(
            {
                "name": entry.key,
                "schedule": entry.schedule,
                "timezone": entry.timezone,
                "worker": entry.worker,
                "args": entry.args,
                "last_slot": slot.isoformat() if slot else None,
                "last_job": {"id": job[0], "state": job[1]} if job else None,
                "next_slot": _next_slot(entry.schedule, entry.timezone, now),
            }
        )
    return out


def _next_slot(expression: str, timezone: str, now: datetime) -> str | None:
    try:
        found: datetime = croniter(expression, now.astimezone(ZoneInfo(timezone))).get_next(
            datetime
        )
    except (ValueError, KeyError):
        return None
    return found.astimezone(UTC).isoformat()


def parse_filter(query: Mapping[str, Any], states: list[str]) -> JobFilter:
    """The shared job filter from a query string or form: state (repeated), queue, worker,
    tag, args (a JSON object: containment; other text: a substring), from, to (ISO 8601)."""
    args = _text(query.get("args"))
    args_json: dict[str, Any] | None = None
    if args is not None and args.startswith("{"):
        try:
            decoded = json.loads(args)
        except ValueError:
            raise BadFilter(f"args {args!r} is not a JSON object") from None
        if not isinstance(decoded, dict):
            raise BadFilter(f"args {args!r} is not a JSON object")
        args_json, args = decoded, None
    tag = _text(query.get("tag"))
    try:
        return JobFilter.build(
            state=states or None,
            queue=_text(query.get("queue")),
            worker=_text(query.get("worker")),
            tags=None if tag is None else [tag],
            args=args_json,
            args_text=args,
            inserted_after=_time(query.get("from"), "from"),
            inserted_before=_time(query.get("to"), "to"),
        )
    except InvalidFilter as exc:
        raise BadFilter(str(exc)) from None


def filter_query(where: JobFilter) -> list[tuple[str, str]]:
    """The query string pairs that give back `where`."""
    pairs = [("state", s) for s in where.states or ()]
    for key, value in (
        ("queue", where.queue),
        ("worker", where.worker),
        ("tag", where.tags[0] if where.tags else None),
        ("args", where.args_text),
        ("args", None if where.args is None else json.dumps(where.args)),
        ("from", where.inserted_after.isoformat() if where.inserted_after else None),
        ("to", where.inserted_before.isoformat() if where.inserted_before else None),
    ):
        if value is not None:
            pairs.append((key, value))
    return pairs


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _time(value: Any, name: str) -> datetime | None:
    text = _text(value)
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise BadFilter(f"{name} {text!r} is not a date and time (ISO 8601)") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def int_param(value: Any, name: str, default: int | None, *, low: int, high: int) -> int | None:
    text = _text(value)
    if text is None:
        return default
    try:
        number = int(text)
    except ValueError:
        raise BadFilter(f"{name} must be an integer, got {text!r}") from None
    if not low <= number <= high:
        raise BadFilter(f"{name} must be between {low} and {high}, got {number}")
    return number


async def list_jobs(
    client: Connected, where: JobFilter, *, cursor: int | None, limit: int, oldest: bool = False
) -> tuple[list[Job], int | None]:
    """A page of jobs (newest first, or oldest) and the cursor of the next (None: the last):
    the shared job filter's keyset listing."""
    if oldest:
        jobs = await _queries.list_jobs_oldest(client.pool, where, limit=limit + 1, after_id=cursor)
    else:
        jobs = await _queries.list_jobs(client.pool, where, limit=limit + 1, before_id=cursor)
    more = len(jobs) > limit
    jobs = jobs[:limit]
    return jobs, (jobs[-1].id if more and jobs else None)


def timeline(job: Job) -> list[tuple[str, datetime]]:
    """The job's moments in order: inserted, scheduled, attempted, finished."""
    moments = [
        ("inserted", job.inserted_at),
        ("scheduled", job.scheduled_at),
        ("attempted", job.attempted_at),
        ("completed", job.completed_at),
        ("discarded", job.discarded_at),
        ("cancelled", job.cancelled_at),
    ]
    return sorted(((name, at) for name, at in moments if at is not None), key=lambda m: m[1])


def safe(text: str) -> str:
    """Text shown in a page, with any database password taken out."""
    return redact(text)
