"""One job filter for listings and bulk actions: the client's, the CLI's and the dashboard's."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

from jobrunner.core.errors import InvalidFilter
from jobrunner.core.job import Job, JobState


class JobFilterArgs(TypedDict, total=False):
    """The filter's keywords, as `client.list_jobs` and the bulk actions take them."""

    state: str | Sequence[str] | None
    queue: str | None
    worker: str | None
    tags: Iterable[str] | None
    args: Mapping[str, Any] | None
    args_text: str | None
    inserted_after: datetime | None
    inserted_before: datetime | None


FILTER_KEYS = (
    "state",
    "queue",
    "worker",
    "tags",
    "args",
    "args_text",
    "inserted_after",
    "inserted_before",
)


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs: every given condition holds (tags: all of them; args: JSON containment;
    args_text: a substring of the args' JSON text).

    Example:
        >>> JobFilter.build(state="discarded", args={"user_id": 7}).describe()
        "state discarded, args containing {'user_id': 7}"
    """

    states: tuple[str, ...] | None = None
    queue: str | None = None
    worker: str | None = None
    tags: tuple[str, ...] | None = None
    args: dict[str, Any] | None = None
    inserted_after: datetime | None = None
    inserted_before: datetime | None = None
    args_text: str | None = None

    @classmethod
    def build(
        cls,
        *,
        state: str | Sequence[str] | None = None,
        queue: str | None = None,
        worker: str | None = None,
        tags: Iterable[str] | None = None,
        args: Mapping[str, Any] | None = None,
        args_text: str | None = None,
        inserted_after: datetime | None = None,
        inserted_before: datetime | None = None,
    ) -> JobFilter:
        """A checked filter; bad values raise InvalidFilter with one line saying why."""
        found = cls(
            states=None if state is None else _states(state),
            queue=_text("queue", queue),
            worker=_text("worker", worker),
            tags=None if tags is None else _tags(tags),
            args=None if args is None else _args(args),
            inserted_after=_aware("inserted_after", inserted_after),
            inserted_before=_aware("inserted_before", inserted_before),
            args_text=_text("args_text", args_text),
        )
        return found

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> JobFilter:
        """A filter from keys and values (a query string, a JSON body); unknown keys refused."""
        unknown = sorted(set(values) - set(FILTER_KEYS))
        if unknown:
            raise InvalidFilter(
                f"unknown job filter {unknown[0]!r}; filters are {', '.join(FILTER_KEYS)}"
            )
        return cls.build(**values)

    @property
    def empty(self) -> bool:
        return all(getattr(self, name) is None for name in self.__slots__)

    def params(self) -> list[Any]:
        """$1-$8 of the statements that filter jobs (sql/list_jobs.sql and the bulk ones)."""
        return [
            None if self.states is None else list(self.states),
            self.queue,
            self.worker,
            None if self.tags is None else list(self.tags),
            None if self.args is None else json.dumps(self.args),
            self.inserted_after,
            self.inserted_before,
            self.args_text,
        ]

    def matches(self, job: Job) -> bool:
        """True when `job` meets every condition, as the statements decide it (for jobs
        already read, such as a workflow's steps)."""
        at = job.inserted_at
        return (
            (self.states is None or job.state.value in self.states)
            and (self.queue is None or job.queue == self.queue)
            and (self.worker is None or job.worker == self.worker)
            and (self.tags is None or set(self.tags) <= set(job.tags))
            and (self.args is None or _contains(job.args, self.args))
            and (self.inserted_after is None or (at is not None and at > self.inserted_after))
            and (self.inserted_before is None or (at is not None and at < self.inserted_before))
        )

    def describe(self) -> str:
        """The filter in words, for the CLI's messages."""
        parts = []
        if self.states is not None:
            parts.append(f"state {'/'.join(self.states)}")
        if self.queue is not None:
            parts.append(f"queue {self.queue!r}")
        if self.worker is not None:
            parts.append(f"worker {self.worker!r}")
        if self.tags is not None:
            parts.append(f"tags {', '.join(self.tags)}")
        if self.args is not None:
            parts.append(f"args containing {self.args!r}")
        if self.args_text is not None:
            parts.append(f"args with the text {self.args_text!r}")
        if self.inserted_after is not None:
            parts.append(f"inserted after {self.inserted_after.isoformat()}")
        if self.inserted_before is not None:
            parts.append(f"inserted before {self.inserted_before.isoformat()}")
        return ", ".join(parts) or "every job"


def _contains(actual: Any, expected: Any) -> bool:
    """jsonb containment (@>): objects by subset of keys, arrays by subset of elements."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and _contains(actual[k], v) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return isinstance(actual, list) and all(
            any(_contains(a, e) for a in actual) for e in expected
        )
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    return bool(actual == expected)


def _states(state: str | Sequence[str]) -> tuple[str, ...]:
    states = [state] if isinstance(state, str) else list(state)
    valid = [s.value for s in JobState]
    for name in states:
        if name not in valid:
            raise InvalidFilter(f"unknown job state {name!r}; states are {', '.join(valid)}")
    if not states:
        raise InvalidFilter("state must name at least one state")
    return tuple(states)


def _text(what: str, value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidFilter(f"{what} must be a non-empty string, got {value!r}")
    return value


def _tags(tags: Iterable[str]) -> tuple[str, ...]:
    if isinstance(tags, str):
        raise InvalidFilter(f"tags must be a list of strings, got {tags!r}")
    found = tuple(tags)
    if not found or not all(isinstance(t, str) and t for t in found):
        raise InvalidFilter(f"tags must be non-empty strings, got {list(found)!r}")
    return found


def _args(args: object) -> dict[str, Any]:
    if not isinstance(args, Mapping):
        raise InvalidFilter(
            f'args must be a JSON object like {{"user_id": 7}}, got {type(args).__name__}'
        )
    try:
        json.dumps(dict(args), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidFilter(f"args must be JSON-serialisable: {exc}") from None
    return dict(args)


def _aware(what: str, at: object) -> datetime | None:
    if at is None:
        return None
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise InvalidFilter(
            f"{what} must be a timezone-aware datetime (e.g. 2026-12-01T00:00:00+00:00), got {at!r}"
        )
    return at
