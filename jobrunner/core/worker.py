"""The @worker decorator, the Worker it registers, and the name -> worker registry."""

from __future__ import annotations

import inspect
import math
import random
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from jobrunner.core.errors import InvalidJob, UnknownWorker
from jobrunner.core.job import Job
from jobrunner.core.new_job import DEFAULT_MAX_ATTEMPTS, DEFAULT_QUEUE, NewJob, Unique


def default_backoff(attempt: int) -> float:
    """Oban's backoff: 15 + 2**attempt seconds, plus up to 10% jitter."""
    base = 15.0 + float(2 ** min(max(attempt, 0), 24))
    return base + random.uniform(0, base * 0.1)


class Worker:
    """A registered worker: what the daemon looks up by name to run a job."""

    __slots__ = (
        "_backoff",
        "_perform",
        "_timeout",
        "max_attempts",
        "name",
        "priority",
        "queue",
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
        perform: Callable[[Job], Awaitable[Any]],
        backoff: Callable[[Job], float] | None,
        timeout_fn: Callable[[Job], float | None] | None,
        queue: str,
        max_attempts: int,
        priority: int,
        tags: tuple[str, ...],
        timeout: float | None,
        unique: Unique | None,
    ) -> None:
        self.name, self.target = name, target
        self._perform, self._backoff, self._timeout = perform, backoff, timeout_fn
        self.queue, self.max_attempts, self.priority = queue, max_attempts, priority
        self.tags, self.timeout, self.unique = tags, timeout, unique

    def __repr__(self) -> str:
        return f"<jobrunner.Worker {self.name!r} queue={self.queue!r}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.target(*args, **kwargs)

    async def perform(self, job: Job) -> Any:
        return await self._perform(job)

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
        args: dict[str, Any] | None = None,
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
        time; `unique=False` drops the worker's uniqueness for this job.

        Example:
            >>> await client.insert(send_email.new({"user_id": 42}, schedule_in=60))
        """
        if unique is True:
            unique_opt = self.unique
        elif unique is False:
            unique_opt = None
        else:
            unique_opt = unique
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
) -> Callable[[Any], Any]:
    """Register an async function, or a class with `async perform(job)`, as a worker.

    Example:
        >>> @worker(queue="emails", max_attempts=5)
        ... async def send_email(job: Job) -> None: ...
        >>> @worker(queue="media")
        ... class ProcessVideo:
        ...     async def perform(self, job: Job) -> None: ...
        ...     def backoff(self, job: Job) -> float: return 2 ** job.attempt
    """
    tags = _tags(tags)
    _validate_options(queue, max_attempts, priority, tags, timeout, unique)

    def decorate(target: Any) -> Any:
        worker_name = name or f"{target.__module__}.{target.__qualname__}"
        _check_name_free(worker_name, target)
        common: dict[str, Any] = dict(
            name=worker_name,
            target=target,
            queue=queue,
            max_attempts=max_attempts,
            priority=priority,
            tags=tags,
            timeout=timeout,
            unique=unique,
        )
        if inspect.isclass(target):
            registered = _class_worker(target, worker_name, common)
            target.new = registered.new  # type: ignore[attr-defined]
            target.worker = registered  # type: ignore[attr-defined]
            _REGISTRY[worker_name] = registered
            return target
        if not inspect.iscoroutinefunction(target):
            raise TypeError(f"worker {worker_name!r} must be an 'async def' function or a class")
        registered = Worker(perform=target, backoff=None, timeout_fn=None, **common)
        _REGISTRY[worker_name] = registered
        return registered

    return decorate


def _class_worker(cls: Any, worker_name: str, common: dict[str, Any]) -> Worker:
    """A Worker around a class: a new instance per call, as a job is a fresh start."""
    if not inspect.iscoroutinefunction(getattr(cls, "perform", None)):
        raise TypeError(f"worker class {worker_name!r} needs 'async def perform(self, job)'")

    async def perform(job: Job) -> Any:
        return await cls().perform(job)

    def backoff(job: Job) -> float:
        return float(cls().backoff(job))

    def timeout_fn(job: Job) -> float | None:
        value = cls().timeout(job)
        return None if value is None else float(value)

    return Worker(
        perform=perform,
        backoff=backoff if callable(getattr(cls, "backoff", None)) else None,
        timeout_fn=timeout_fn if callable(getattr(cls, "timeout", None)) else None,
        **common,
    )


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
