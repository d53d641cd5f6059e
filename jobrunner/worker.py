"""The @worker decorator, insertable jobs, and the name -> worker registry."""

from __future__ import annotations

import inspect
import json
import math
import random
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from . import _threads, _typed_args
from .errors import InvalidJob, UnknownWorker
from .job import Job, JobState

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
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.\-:]{1,128}$")


def validate_queue(name: object) -> str:
    """Return `name` if it is a usable queue name, else raise InvalidJob."""
    if not isinstance(name, str) or not _QUEUE_NAME.match(name):
        raise InvalidJob(f"queue name must be 1-128 letters, digits or '_.-:', got {name!r}")
    return name


def default_backoff(attempt: int) -> float:
    """Oban's backoff: 15 + 2**attempt seconds, plus up to 10% jitter."""
    base = 15.0 + float(2 ** min(max(attempt, 0), 24))
    return base + random.uniform(0, base * 0.1)


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
            not isinstance(self.scheduled_at, datetime) or self.scheduled_at.tzinfo is None
        ):
            raise InvalidJob(
                f"scheduled_at must be a timezone-aware datetime, got {self.scheduled_at!r}"
            )
        if self.schedule_in is not None and (
            not isinstance(self.schedule_in, int | float)
            or isinstance(self.schedule_in, bool)
            or not math.isfinite(self.schedule_in)
            or self.schedule_in < 0
        ):
            raise InvalidJob(f"schedule_in must be seconds >= 0, got {self.schedule_in!r}")
        if self.unique is not None and not isinstance(self.unique, Unique):
            raise InvalidJob(f"unique must be a jobrunner.Unique, got {self.unique!r}")

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


class Worker:
    """A registered worker: what the daemon looks up by name to run a job."""

    __slots__ = (
        "_backoff",
        "_perform",
        "_timeout",
        "args_type",
        "max_attempts",
        "name",
        "priority",
        "queue",
        "sync",
        "tags",
        "target",
        "timeout",
        "unique",
    )

    def __init__(
        self,
        *,
        name: str,
        target: Any,
        perform: Callable[..., Any],
        backoff: Callable[[Job], float] | None,
        timeout_fn: Callable[[Job], float | None] | None,
        queue: str,
        max_attempts: int,
        priority: int,
        tags: tuple[str, ...],
        timeout: float | None,
        unique: Unique | None,
        sync: bool = False,
        args_type: type | None = None,
    ) -> None:
        self.name, self.target = name, target
        self.sync, self.args_type = sync, args_type
        self._perform, self._backoff, self._timeout = perform, backoff, timeout_fn
        self.queue, self.max_attempts, self.priority = queue, max_attempts, priority
        self.tags, self.timeout, self.unique = tags, timeout, unique

    def __repr__(self) -> str:
        return f"<jobrunner.Worker {self.name!r} queue={self.queue!r}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.target(*args, **kwargs)

    async def perform(self, job: Job) -> Any:
        """Run the worker on `job`: awaited, or, for a plain `def`, in a thread of the pool.

        With `args=` declared, the worker gets the typed args after the job; args that no
        longer fit the type fail the attempt with InvalidJob.
        """
        typed = () if self.args_type is None else (self.typed_args(job),)
        if self.sync:
            return await _threads.run(self._call_sync, job, *typed)
        perform: Callable[..., Awaitable[Any]] = self._perform
        return await perform(job, *typed)

    def _call_sync(self, job: Job, *typed: Any) -> Any:
        value = self._perform(job, *typed)
        if inspect.isawaitable(value):
            if inspect.iscoroutine(value):
                value.close()
            raise TypeError(
                f"worker {self.name!r} is a plain 'def' but returned an awaitable; "
                "declare it 'async def'"
            )
        return value

    def typed_args(self, job: Job) -> Any:
        """`job.args` as the worker's declared args type (InvalidJob if they do not fit)."""
        if self.args_type is None:
            raise TypeError(f"worker {self.name!r} declares no args type")
        return _typed_args.to_value(self.args_type, job.args, self.name)

    def backoff(self, job: Job) -> float:
        """Seconds to wait before retrying `job` after its failed attempt."""
        if self._backoff is not None:
            return float(self._backoff(job))
        return default_backoff(job.attempt)

    def timeout_for(self, job: Job) -> float | None:
        if self._timeout is not None:
            return self._timeout(job)
        return self.timeout

    def new(
        self,
        args: Any = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        tags: Iterable[str] | None = None,
        meta: dict[str, Any] | None = None,
        schedule_in: float | timedelta | None = None,
        scheduled_at: datetime | None = None,
        unique: Unique | bool | None = True,
    ) -> NewJob:
        """Build an insertable job; options override the worker's.

        `schedule_in` is seconds (or a timedelta) from now; `scheduled_at` a timezone-aware
        time; `unique=False` drops the worker's uniqueness for this job. A worker with
        `args=` declared takes its args as that type or as a dict that fits it (InvalidJob
        naming the field otherwise); they are stored as a JSON object either way.

        Example:
            >>> await client.insert(send_email.new({"user_id": 42}, schedule_in=60))
        """
        if unique is True:
            unique_opt = self.unique
        elif unique is False:
            unique_opt = None
        else:
            unique_opt = unique
        if self.args_type is not None:
            args = _typed_args.to_dict(self.args_type, {} if args is None else args, self.name)
        return NewJob(
            worker=self.name,
            args={} if args is None else args,
            queue=self.queue if queue is None else queue,
            priority=self.priority if priority is None else priority,
            max_attempts=self.max_attempts if max_attempts is None else max_attempts,
            tags=self.tags if tags is None else _tags(tags),
            meta={} if meta is None else meta,
            schedule_in=(
                schedule_in.total_seconds() if isinstance(schedule_in, timedelta) else schedule_in
            ),
            scheduled_at=scheduled_at,
            unique=unique_opt,
        )


_REGISTRY: dict[str, Worker] = {}


def _check_name_free(name: str, target: Any) -> None:
    """Refuse a name that another worker holds: its jobs would run this code instead.

    The same definition registering again (its module imported a second time) replaces
    itself.
    """
    existing = _REGISTRY.get(name)
    if existing is None:
        return
    held_by = f"{existing.target.__module__}.{existing.target.__qualname__}"
    if held_by != f"{target.__module__}.{target.__qualname__}":
        raise ValueError(
            f"worker name {name!r} is already taken by {held_by}; give one of them another name="
        )


def worker(
    *,
    queue: str = DEFAULT_QUEUE,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    priority: int = 0,
    tags: Iterable[str] = (),
    timeout: float | None = None,
    unique: Unique | None = None,
    name: str | None = None,
    backoff: Callable[[Job], float] | None = None,
    args: type | None = None,
) -> Callable[[Any], Any]:
    """Register a function, or a class with a `perform(job)` method, as a worker.

    An `async def` runs on the event loop; a plain `def` runs in the runner's thread pool
    (`threads`), so blocking code (requests, boto3, a sync ORM) does not stall other jobs.
    `args=` declares the args as a dataclass or a pydantic model: `new()` checks them and
    the worker receives the typed value as its second argument.

    `backoff(job)` returns the seconds to wait before retrying a failed attempt (a class may
    define it as a method instead); `job.unsaved_error` is the exception it raised.

    Example:
        >>> @worker(queue="emails", max_attempts=5)
        ... async def send_email(job: Job) -> None: ...
        >>> @worker(queue="images", args=ResizeArgs)
        ... def resize(job: Job, args: ResizeArgs) -> None: ...
        >>> @worker(queue="media")
        ... class ProcessVideo:
        ...     async def perform(self, job: Job) -> None: ...
        ...     def backoff(self, job: Job) -> float: return 2 ** job.attempt
    """
    tags = _tags(tags)
    _validate_options(queue, max_attempts, priority, tags, timeout, unique)
    if backoff is not None and not callable(backoff):
        raise InvalidJob(f"backoff must be a function of the job, got {backoff!r}")
    args_type = args

    def decorate(target: Any) -> Any:
        if getattr(target, "__name__", None) == "<lambda>":
            raise TypeError(
                "a lambda cannot be a worker: define it with 'def' (it runs in a thread) "
                "or 'async def'"
            )
        if not (inspect.isclass(target) or inspect.isfunction(target)):
            raise TypeError(f"a worker must be a function or a class, got {target!r}")
        worker_name = name or f"{target.__module__}.{target.__qualname__}"
        _check_name_free(worker_name, target)
        typed = None if args_type is None else _typed_args.check_type(args_type, worker_name)
        common: dict[str, Any] = dict(
            name=worker_name,
            target=target,
            queue=queue,
            max_attempts=max_attempts,
            priority=priority,
            tags=tags,
            timeout=timeout,
            unique=unique,
            args_type=typed,
        )
        if inspect.isclass(target):
            registered = _class_worker(target, worker_name, common, backoff)
            target.new = registered.new  # type: ignore[attr-defined]
            target.worker = registered  # type: ignore[attr-defined]
            _REGISTRY[worker_name] = registered
            return target
        sync = _perform_kind(target, f"worker {worker_name!r}", typed is not None, 0)
        registered = Worker(perform=target, backoff=backoff, timeout_fn=None, sync=sync, **common)
        _REGISTRY[worker_name] = registered
        return registered

    return decorate


def _class_worker(
    cls: Any, worker_name: str, common: dict[str, Any], given_backoff: Callable[[Job], float] | None
) -> Worker:
    """A Worker around a class: a new instance per call, as a job is a fresh start.

    A `backoff` method wins over the decorator's `backoff=`."""
    what = f"worker class {worker_name!r}"
    method = getattr(cls, "perform", None)
    if not inspect.isfunction(method):
        raise TypeError(f"{what} needs a 'perform(self, job)' method ('def' or 'async def')")
    sync = _perform_kind(method, what, common["args_type"] is not None, 1)
    for hook in ("backoff", "timeout"):
        found = getattr(cls, hook, None)
        if inspect.iscoroutinefunction(found) or inspect.isasyncgenfunction(found):
            kind = "def" if sync else "async def"
            raise TypeError(
                f"{what} mixes '{kind} perform' with 'async def {hook}': {hook} must be a "
                "plain 'def' (it is called between attempts, never awaited)"
            )

    def perform(job: Job, *typed: Any) -> Any:
        return cls().perform(job, *typed)

    def backoff(job: Job) -> float:
        return float(cls().backoff(job))

    def timeout_fn(job: Job) -> float | None:
        value = cls().timeout(job)
        return None if value is None else float(value)

    return Worker(
        perform=perform,
        sync=sync,
        backoff=backoff if callable(getattr(cls, "backoff", None)) else given_backoff,
        timeout_fn=timeout_fn if callable(getattr(cls, "timeout", None)) else None,
        **common,
    )


def _perform_kind(fn: Any, what: str, typed: bool, bound: int) -> bool:
    """Whether `fn` is a plain `def` (True) or an `async def` (False); TypeError for what
    cannot be a worker. `bound` counts the leading parameters filled before the job (self).
    """
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(
            f"{what} is a generator ('yield' in its body): a worker runs once and returns "
            "its outcome"
        )
    needs = ["job", "args"] if typed else ["job"]
    try:
        inspect.signature(fn).bind(*([None] * (bound + len(needs))))
    except TypeError:
        raise TypeError(f"{what} must take ({', '.join(needs)}) as its arguments") from None
    except ValueError:
        pass  # no signature to read (a builtin): trust it
    return not inspect.iscoroutinefunction(fn)


def _validate_options(
    queue: str,
    max_attempts: int,
    priority: int,
    tags: tuple[str, ...],
    timeout: float | None,
    unique: Unique | None,
) -> None:
    NewJob(
        worker="_",
        args={},
        queue=queue,
        priority=priority,
        max_attempts=max_attempts,
        tags=tags,
        unique=unique,
    )
    if timeout is not None and (
        not isinstance(timeout, int | float)
        or isinstance(timeout, bool)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise InvalidJob(f"timeout must be seconds > 0 or None, got {timeout!r}")


def _tags(tags: Iterable[str]) -> tuple[str, ...]:
    if isinstance(tags, str):
        raise InvalidJob(f"tags must be a list of strings, got {tags!r}")
    return tuple(tags)


def lookup(name: str) -> Worker:
    """The registered worker called `name`."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownWorker(f"unknown worker {name!r}; is its module in --app?") from None


def registered() -> dict[str, Worker]:
    """A copy of the registry, name -> worker."""
    return dict(_REGISTRY)


def as_worker(target: Worker | type | str) -> Worker:
    """Resolve a worker object, a decorated class or a registered name."""
    if isinstance(target, Worker):
        return target
    if isinstance(target, str):
        return lookup(target)
    found = getattr(target, "worker", None)
    if isinstance(found, Worker):
        return found
    raise UnknownWorker(f"{target!r} is not a jobrunner worker; decorate it with @worker")


def now_utc() -> datetime:
    return datetime.now(UTC)
