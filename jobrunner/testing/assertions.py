"""The assertions on enqueued jobs: `assert_enqueued`, `refute_enqueued` and `all_enqueued`,
matching the jobs in the database (through `conn=`, those of a test's transaction too)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypedDict, TypeVar, Unpack

from jobrunner.client import Client
from jobrunner.core.errors import InvalidJob
from jobrunner.core.job import Job, JobState
from jobrunner.core.worker import Worker, as_worker
from jobrunner.db import queries as _queries

DEFAULT_STATES = (JobState.AVAILABLE, JobState.SCHEDULED, JobState.RETRYABLE)
"""The states the assertions look at by default: jobs that have not finished."""

SCHEDULED_AT_TOLERANCE = timedelta(seconds=1)
_POLL_INTERVAL_S = 0.05
_SHOWN = 5  # jobs listed in a failed assertion's message

T = TypeVar("T")


# --- assert_enqueued, refute_enqueued, all_enqueued ----------------------------------------


class JobFilters(TypedDict, total=False):
    """What `assert_enqueued`, `refute_enqueued` and `all_enqueued` match jobs on."""

    worker: Worker | type | str
    args: dict[str, Any]
    queue: str
    priority: int
    scheduled_at: datetime | tuple[datetime, timedelta | float]
    tags: Iterable[str]
    meta: dict[str, Any]
    state: JobState | str | Iterable[JobState | str]
    workflow: int
    step: str


@dataclass(frozen=True, slots=True)
class _Expected:
    """What the assertions look for; None fields match anything."""

    worker: str | None
    args: dict[str, Any] | None
    queue: str | None
    priority: int | None
    scheduled_at: tuple[datetime, timedelta] | None
    tags: tuple[str, ...] | None
    meta: dict[str, Any] | None
    states: tuple[JobState, ...]
    workflow: int | None = None
    step: str | None = None

    def mismatches(self, job: Job) -> list[str]:
        """The fields in which `job` differs from what is expected."""
        at, within = self.scheduled_at or (None, None)
        fits = {
            "worker": self.worker is None or job.worker == self.worker,
            "queue": self.queue is None or job.queue == self.queue,
            "args": self.args is None or _contains(job.args, self.args),
            "meta": self.meta is None or _contains(job.meta, self.meta),
            "priority": self.priority is None or job.priority == self.priority,
            "tags": self.tags is None or set(self.tags) <= set(job.tags),
            "scheduled_at": at is None
            or within is None
            or (job.scheduled_at is not None and abs(job.scheduled_at - at) <= within),
            "state": job.state in self.states,
            "workflow": self.workflow is None or job.workflow_id == self.workflow,
            "step": self.step is None or job.step == self.step,
        }
        return [name for name, fit in fits.items() if not fit]

    def describe(self) -> str:
        texts = {
            "worker": f"worker={self.worker!r}",
            "queue": f"queue={self.queue!r}",
            "args": f"args containing {_short(self.args)}",
            "meta": f"meta containing {_short(self.meta)}",
            "priority": f"priority={self.priority}",
            "tags": f"tags including {list(self.tags or ())!r}",
            "workflow": f"workflow={self.workflow!r}",
            "step": f"step={self.step!r}",
        }
        parts = [text for name, text in texts.items() if getattr(self, name) is not None]
        if self.scheduled_at is not None:
            at, within = self.scheduled_at
            parts.append(f"scheduled_at={at.isoformat()} ± {within.total_seconds():g}s")
        parts.append(f"state in ({', '.join(self.states)})")
        return ", ".join(parts)


def _contains(actual: Any, expected: Any) -> bool:
    """PostgreSQL's jsonb containment (@>): objects by subset, arrays by subset of elements."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and _contains(actual[key], value) for key, value in expected.items()
        )
    if isinstance(expected, list):
        return isinstance(actual, list) and all(
            any(_contains(item, wanted) for item in actual) for wanted in expected
        )
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return expected == actual
    return type(expected) is type(actual) and expected == actual


def _expected(filters: Mapping[str, Any]) -> _Expected:
    unknown = sorted(set(filters) - set(JobFilters.__annotations__))
    if unknown:
        raise TypeError(
            f"unknown job filter {unknown[0]!r}; use {', '.join(JobFilters.__annotations__)}"
        )
    worker, tags = filters.get("worker"), filters.get("tags")
    if isinstance(tags, str):
        raise InvalidJob(f"tags must be a list of strings, got {tags!r}")
    return _Expected(
        worker=None
        if worker is None
        else worker
        if isinstance(worker, str)
        else as_worker(worker).name,
        args=_json("args", filters.get("args")),
        queue=filters.get("queue"),
        priority=filters.get("priority"),
        scheduled_at=_window(filters.get("scheduled_at")),
        tags=None if tags is None else tuple(tags),
        meta=_json("meta", filters.get("meta")),
        states=_states(filters.get("state")),
        workflow=filters.get("workflow"),
        step=filters.get("step"),
    )


def _json(what: str, value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidJob(f"{what} must be a dict, got {value!r}")
    try:
        decoded: dict[str, Any] = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidJob(f"{what} must be JSON-serialisable: {exc}") from None
    return decoded


def _window(value: Any) -> tuple[datetime, timedelta] | None:
    if value is None:
        return None
    at, within = value if isinstance(value, tuple) and len(value) == 2 else (value, None)
    if not isinstance(at, datetime) or at.tzinfo is None:
        raise InvalidJob(
            f"scheduled_at must be a timezone-aware datetime or (datetime, delta), got {value!r}"
        )
    if within is None:
        return at, SCHEDULED_AT_TOLERANCE
    if isinstance(within, int | float) and not isinstance(within, bool):
        within = timedelta(seconds=within)
    if not isinstance(within, timedelta) or within < timedelta(0):
        raise InvalidJob(
            f"scheduled_at tolerance must be a timedelta or seconds >= 0, got {within!r}"
        )
    return at, within


def _states(state: JobState | str | Iterable[JobState | str] | None) -> tuple[JobState, ...]:
    if state is None:
        return DEFAULT_STATES
    wanted = [state] if isinstance(state, str) else list(state)
    states = []
    for value in wanted:
        try:
            states.append(JobState(value))
        except ValueError:
            raise InvalidJob(
                f"unknown job state {value!r}; use one of {', '.join(JobState)}"
            ) from None
    if not states:
        raise InvalidJob("state must name at least one job state")
    return tuple(states)


async def _matching(client: Client, expected: _Expected, conn: Any = None) -> list[Job]:
    jobs = await _queries.enqueued_jobs(
        conn or client.pool,
        states=list(expected.states),
        worker=expected.worker,
        queue=expected.queue,
    )
    return [job for job in jobs if not expected.mismatches(job)]


async def _poll(
    check: Callable[[], Awaitable[T]], timeout_s: float | None, done: Callable[[T], bool]
) -> T:
    """`check()` until `done` holds of its value or `timeout_s` passed; the last value."""
    value = await check()
    if timeout_s is None or done(value):
        return value
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        await asyncio.sleep(min(_POLL_INTERVAL_S, max(deadline - loop.time(), 0)))
        value = await check()
        if done(value):
            return value
    return value


async def assert_enqueued(
    client: Client,
    *,
    timeout: float | None = None,  # noqa: ASYNC109
    conn: Any = None,
    **filters: Unpack[JobFilters],
) -> Job:
    """Assert that a job matching these fields is enqueued, and return it (the oldest).

    `args` and `meta` match as subsets (PostgreSQL's `@>`), `tags` when all given tags are
    there, `scheduled_at` within 1 second (or pass `(datetime, tolerance)`), the others by
    equality. `worker` is a worker, a decorated class or a worker name. Jobs are looked for
    in `DEFAULT_STATES` unless `state` names others. With `timeout` (seconds), wait up to
    that long for the job to appear (jobs enqueued by a running daemon or another task).
    With `conn` (an asyncpg connection), look through it: inside its open transaction.

    Raises:
        AssertionError: no such job; the message lists the jobs enqueued instead.

    Example:
        >>> await assert_enqueued(client, worker=send_email, args={"user_id": 42})
        >>> await assert_enqueued(client, worker=remind, scheduled_at=(in_a_week, 60))
    """
    expected = _expected(filters)
    found = await _poll(lambda: _matching(client, expected, conn), timeout, bool)
    if not found:
        raise AssertionError(await _explain_missing(client, expected, timeout, conn))
    return found[0]


async def refute_enqueued(
    client: Client,
    *,
    timeout: float | None = None,  # noqa: ASYNC109
    conn: Any = None,
    **filters: Unpack[JobFilters],
) -> None:
    """Assert that no job matching these filters is enqueued; filters as in `assert_enqueued`.

    With `timeout` (seconds), keep checking for that long: the assertion fails as soon as
    such a job appears.

    Raises:
        AssertionError: such jobs exist; the message lists them.

    Example:
        >>> await refute_enqueued(client, worker=send_email, args={"user_id": 42})
    """
    expected = _expected(filters)
    found = await _poll(lambda: _matching(client, expected, conn), timeout, bool)
    if found:
        lines = [f"expected no job enqueued with {expected.describe()}; found {len(found)}:"]
        lines += _listing(found, expected=None)
        raise AssertionError("\n".join(lines))


async def all_enqueued(
    client: Client, *, conn: Any = None, **filters: Unpack[JobFilters]
) -> list[Job]:
    """The enqueued jobs matching these filters, oldest first; filters as in `assert_enqueued`.

    Example:
        >>> jobs = await all_enqueued(client, worker=send_email)
        >>> sorted(job.args["user_id"] for job in jobs)
        [1, 2, 3]
    """
    expected = _expected(filters)
    return await _matching(client, expected, conn)


async def _explain_missing(
    client: Client, expected: _Expected, waited_s: float | None, conn: Any = None
) -> str:
    waited = f" within {waited_s:g}s" if waited_s else ""
    head = f"expected a job enqueued with {expected.describe()}; found none{waited}"
    others = await _queries.enqueued_jobs(
        conn or client.pool, states=list(expected.states), limit=1000
    )
    # The same worker's jobs first: they are the likeliest near misses.
    others.sort(key=lambda job: (job.worker != expected.worker, job.id))
    lines = [
        head
        + (
            f" among {len(others)} enqueued jobs:"
            if others
            else "; no job is enqueued in those states"
        )
    ]
    lines += _listing(others, expected=expected)
    elsewhere = await _queries.enqueued_jobs(
        conn or client.pool,
        states=[s for s in JobState if s not in expected.states],
        worker=expected.worker,
        queue=expected.queue,
        limit=1000,
    )
    near = [job for job in elsewhere if expected.mismatches(job) == ["state"]]
    if near:
        lines.append(f"{len(near)} matching job(s) in other states, pass state= to include them:")
        lines += _listing(near, expected=None)
    return "\n".join(lines)


def _listing(jobs: list[Job], expected: _Expected | None) -> list[str]:
    lines = []
    for job in jobs[:_SHOWN]:
        line = (
            f"  #{job.id} {job.worker} queue={job.queue!r} state={job.state} "
            f"args={_short(job.args)}"
        )
        if job.meta:
            line += f" meta={_short(job.meta)}"
        if job.priority:
            line += f" priority={job.priority}"
        if job.tags:
            line += f" tags={list(job.tags)!r}"
        if job.state is not JobState.AVAILABLE and job.scheduled_at is not None:
            line += f" scheduled_at={job.scheduled_at.isoformat()}"
        if expected is not None:
            line += f"  (differs in {', '.join(expected.mismatches(job)) or 'nothing now'})"
        lines.append(line)
    if len(jobs) > _SHOWN:
        lines.append(f"  ... and {len(jobs) - _SHOWN} more")
    return lines


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
