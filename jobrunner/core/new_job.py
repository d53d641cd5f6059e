"""Insertable jobs: NewJob (what worker.new builds), its unique options, and the checks on
queue names, args and meta."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from jobrunner.core.errors import InvalidJob
from jobrunner.core.job import JobState, check_delay

DEFAULT_QUEUE = "default"
DEFAULT_MAX_ATTEMPTS = 20
DEFAULT_UNIQUE_STATES = (
    JobState.AVAILABLE,
    JobState.SCHEDULED,
    JobState.EXECUTING,
    JobState.RETRYABLE,
    JobState.COMPLETED,
)
# json.dumps(value, separators=(",", ":"), ensure_ascii=False), without a new encoder a call.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
# orjson writes what the json module would (a tenth of its cost), refusing the rest: integers
# past 64 bits, subclasses, datetimes and dataclasses go to the json module, as before.
_ORJSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)
_UNIQUE_FIELDS = frozenset({"worker", "queue", "args", "meta"})
REPLACE_FIELDS = (
    "args",
    "max_attempts",
    "meta",
    "priority",
    "queue",
    "scheduled_at",
    "tags",
    "worker",
)
# An executing job is never replaced: its worker already runs with the old values.
REPLACE_STATES: tuple[JobState, ...] = tuple(s for s in JobState if s is not JobState.EXECUTING)
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.\-:]{1,128}\Z")
# Scheduled times that stay representable in Python and PostgreSQL in every time zone.
_EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
_LATEST = datetime(9998, 12, 31, tzinfo=UTC)


def validate_queue(name: object) -> str:
    """Return `name` if it is a usable queue name, else raise InvalidJob."""
    if not isinstance(name, str) or not _QUEUE_NAME.match(name):
        raise InvalidJob(f"queue name must be 1-128 letters, digits or '_.-:', got {name!r}")
    return name


@dataclass(frozen=True, slots=True)
class Unique:
    """Make a job unique, as Oban does.

    Args:
        period: seconds since an existing job's insert during which a duplicate is refused
            (a sliding window on the database's clock), or None for ever.
        fields: which of worker, queue, args and meta make two jobs the same.
        keys: only these args (and meta) keys are compared; all when None.
        states: a duplicate only conflicts with jobs in these states: a list, or one of
            Oban's groups "successful" (the default), "incomplete", "scheduled", "all".
        replace: what a duplicate overwrites on the existing job instead of being dropped:
            a list of fields (in every state but executing), or a mapping from the existing
            job's state to fields. Fields: args, max_attempts, meta, priority, queue,
            scheduled_at, tags, worker. An executing job is never replaced.

    Example:
        >>> @worker(unique=Unique(period=300, keys=["user_id"]))
        ... async def welcome(job: Job) -> None: ...
        >>> Unique(period=None, keys=["doc_id"], replace={"scheduled": ["scheduled_at"]})
    """

    period: float | None = 60
    fields: tuple[str, ...] = ("worker", "queue", "args")
    keys: tuple[str, ...] | None = None
    states: tuple[JobState, ...] = DEFAULT_UNIQUE_STATES
    replace: Mapping[JobState, tuple[str, ...]] | None = None

    def __init__(
        self,
        period: float | timedelta | None = 60,
        fields: Iterable[str] = ("worker", "queue", "args"),
        keys: Iterable[str] | None = None,
        states: Iterable[JobState | str] | str = DEFAULT_UNIQUE_STATES,
        replace: Iterable[str] | Mapping[JobState | str, Iterable[str]] | None = None,
    ) -> None:
        if isinstance(keys, str):
            raise InvalidJob(f"unique keys must be a list of strings, got {keys!r}")
        if isinstance(period, timedelta):
            period = period.total_seconds()
        object.__setattr__(self, "period", period)
        object.__setattr__(self, "fields", tuple(fields))
        object.__setattr__(self, "keys", None if keys is None else tuple(keys))
        object.__setattr__(self, "states", _states(states))
        object.__setattr__(self, "replace", _replace(replace))
        self._validate()

    def _validate(self) -> None:
        period = self.period
        if period is not None and not (
            isinstance(period, int | float)
            and not isinstance(period, bool)
            and math.isfinite(period)
            and period > 0
        ):
            raise InvalidJob(f"unique period must be > 0 seconds or None, got {period!r}")
        unknown = set(self.fields) - _UNIQUE_FIELDS
        if unknown or not self.fields:
            raise InvalidJob(
                f"unique fields must be among {sorted(_UNIQUE_FIELDS)}, got {list(self.fields)!r}"
            )
        if self.keys is not None and not (
            self.keys and all(isinstance(k, str) and k for k in self.keys)
        ):
            raise InvalidJob(
                f"unique keys must not be empty and must be strings, got {list(self.keys)!r}"
            )
        if not self.states:
            raise InvalidJob("unique states must not be empty")

    def replace_json(self) -> str | None:
        """`replace` as the JSON object the insert statement reads: state -> fields."""
        if self.replace is None:
            return None
        return json.dumps({state.value: list(f) for state, f in self.replace.items()})

    def fingerprint(
        self, worker: str, queue: str, args: Mapping[str, Any], meta: Mapping[str, Any]
    ) -> str:
        """What two duplicate jobs share (the period is checked by the database).

        `keys` pick from args and meta when those are among the fields; with neither,
        they pick from args (`fields=["worker"], keys=["user_id"]`: one job per user).
        """
        values: dict[str, Any] = {"worker": worker, "queue": queue, "args": args, "meta": meta}
        fields = set(self.fields)
        if self.keys is not None and not fields & {"args", "meta"}:
            fields.add("args")
        picked: dict[str, Any] = {}
        for name in sorted(fields):
            value = values[name]
            if name in ("args", "meta") and self.keys is not None:
                value = {k: value.get(k) for k in self.keys}
            picked[name] = value
        return json.dumps(picked, sort_keys=True, separators=(",", ":"))


# Oban's named groups of unique states.
STATE_GROUPS: dict[str, tuple[JobState, ...]] = {
    "all": tuple(JobState),
    "incomplete": DEFAULT_UNIQUE_STATES[:4],
    "scheduled": (JobState.SCHEDULED,),
    "successful": DEFAULT_UNIQUE_STATES,
}


def _replace(
    value: Iterable[str] | Mapping[JobState | str, Iterable[str]] | None,
) -> dict[JobState, tuple[str, ...]] | None:
    """Oban's two shapes of `replace`, as state -> fields."""
    if value is None:
        return None
    if isinstance(value, str):
        raise InvalidJob(f"unique replace must be a list of fields or a mapping, got {value!r}")
    if isinstance(value, Mapping):
        by_state: dict[JobState, tuple[str, ...]] = {}
        for state, fields in value.items():
            known = _state(state)
            if known is JobState.EXECUTING:
                raise InvalidJob("unique replace cannot name 'executing': a running job is kept")
            by_state[known] = _replace_fields(fields)
        return by_state
    fields = _replace_fields(value)
    return {state: fields for state in REPLACE_STATES}


def _replace_fields(fields: Iterable[str]) -> tuple[str, ...]:
    if isinstance(fields, str):
        raise InvalidJob(f"unique replace fields must be a list, got {fields!r}")
    found = tuple(fields)
    for name in found:
        if name not in REPLACE_FIELDS:
            raise InvalidJob(
                f"unknown unique replace field {name!r}; give some of {', '.join(REPLACE_FIELDS)}"
            )
    return found


def _states(value: Iterable[JobState | str] | str) -> tuple[JobState, ...]:
    if isinstance(value, str) and not isinstance(value, JobState):
        if value in STATE_GROUPS:
            return STATE_GROUPS[value]
        raise InvalidJob(
            f"unknown job state {value!r}; give a list of states or one of {sorted(STATE_GROUPS)}"
        )
    return tuple(_state(s) for s in value)


def _state(value: JobState | str) -> JobState:
    try:
        return JobState(value)
    except ValueError:
        states = ", ".join(s.value for s in JobState)
        raise InvalidJob(f"unknown job state {value!r}; give one of {states}") from None


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job ready to insert; build it with `a_worker.new(args, ...)`."""

    worker: str
    args: dict[str, Any]
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    tags: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    scheduled_at: datetime | None = None
    schedule_in: float | None = None
    unique: Unique | None = None
    # Jobs of one chain run one at a time, in insertion order (see `Worker.new`).
    chain: str | None = None

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        if (
            not isinstance(self.worker, str)
            or not 1 <= len(self.worker) <= 255
            or "\x00" in self.worker
        ):
            raise InvalidJob(
                f"worker name must be a string of 1-255 characters, got {self.worker!r}"
            )
        _json_object("args", self.args)
        _json_object("meta", self.meta)
        validate_queue(self.queue)
        if (
            not isinstance(self.priority, int)
            or isinstance(self.priority, bool)
            or not 0 <= self.priority <= 9
        ):
            raise InvalidJob(f"priority must be an integer from 0 to 9, got {self.priority!r}")
        if (
            not isinstance(self.max_attempts, int)
            or isinstance(self.max_attempts, bool)
            or not 1 <= self.max_attempts <= 32767
        ):
            raise InvalidJob(f"max_attempts must be an integer >= 1, got {self.max_attempts!r}")
        if isinstance(self.tags, str) or not all(
            isinstance(t, str) and t and "\x00" not in t for t in self.tags
        ):
            raise InvalidJob(f"tags must be non-empty strings, got {list(self.tags)!r}")
        if self.scheduled_at is not None and self.schedule_in is not None:
            raise InvalidJob("give scheduled_at or schedule_in, not both")
        if self.scheduled_at is not None and (
            not isinstance(self.scheduled_at, datetime)
            or self.scheduled_at.tzinfo is None
            or not _EARLIEST <= self.scheduled_at <= _LATEST
        ):
            raise InvalidJob(
                f"scheduled_at must be a timezone-aware datetime from year 1 to 9998, "
                f"got {self.scheduled_at!r}"
            )
        if self.schedule_in is not None:
            try:
                check_delay("schedule_in", self.schedule_in)
            except ValueError as exc:
                raise InvalidJob(str(exc)) from None
        if self.unique is not None and not isinstance(self.unique, Unique):
            raise InvalidJob(f"unique must be a jobrunner.Unique, got {self.unique!r}")
        _check_chain(self.chain, self.unique)

    def run_at(self, now: datetime) -> datetime | None:
        """When the job becomes available; None means now (the database's now)."""
        if self.scheduled_at is not None:
            return self.scheduled_at
        if self.schedule_in:
            return now + timedelta(seconds=self.schedule_in)
        return None

    def encoded_args(self) -> str:
        return _compact_json(self.args)

    def encoded_meta(self) -> str:
        return _compact_json(self.meta) if self.meta else "{}"

    def fingerprint(self) -> str | None:
        if self.unique is None:
            return None
        return self.unique.fingerprint(self.worker, self.queue, self.args, self.meta)


def _check_chain(chain: object, unique: Unique | None) -> None:
    if chain is None:
        return
    if not isinstance(chain, str) or not 1 <= len(chain) <= 255 or "\x00" in chain:
        raise InvalidJob(f"chain must be a string of 1-255 characters, got {chain!r}")
    if unique is not None:
        raise InvalidJob("a chained job cannot be unique (unique=False)")


def _compact_json(value: dict[str, Any]) -> str:
    """`value` as compact JSON text, for the database to store."""
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return _COMPACT.encode(value)


def _json_object(what: str, value: object) -> None:
    if not isinstance(value, dict):
        raise InvalidJob(f"{what} must be a JSON object (a dict), got {type(value).__name__}")
    try:
        encoded = json.dumps(value, allow_nan=False)
        decoded = json.loads(encoded)
    except (TypeError, ValueError) as exc:
        raise InvalidJob(f"{what} must be JSON-serialisable: {exc}") from None
    except RecursionError:
        raise InvalidJob(f"{what} is nested too deeply to store") from None
    if decoded != value:
        raise InvalidJob(f"{what} must survive a JSON round trip (string keys, no tuples)")
    if ("\\u0000" in encoded or "\\ud" in encoded) and _bad_text(value):
        raise InvalidJob(
            f"{what} must hold valid text: no NUL characters ('\\x00') and no lone surrogates"
        )


def _bad_text(value: object) -> bool:
    """True if a string in `value` holds what PostgreSQL refuses: NUL or a lone surrogate."""
    if isinstance(value, str):
        if "\x00" in value:
            return True
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_bad_text(k) or _bad_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_bad_text(v) for v in value)
    return False
