"""The @worker decorator, the Worker it registers, and the name -> worker registry."""

from __future__ import annotations

import inspect
import math
import random
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from jobrunner.core import threads as _threads
from jobrunner.core import typed_args as _typed_args
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
        chain: str | None = None,
    ) -> NewJob:
        """Build an insertable job; options override the worker's.

        `schedule_in` is seconds (or a timedelta) from now; `scheduled_at` a timezone-aware
        time; `unique=False` drops the worker's uniqueness for this job. A worker with
        `args=` declared takes its args as that type or as a dict that fits it (InvalidJob
        naming the field otherwise); they are stored as a JSON object either way.
        Jobs inserted with one `chain` key run one at a time, in insertion order, each once
        the one before it finished (whatever its outcome); a chained job is never unique.

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
            unique=None if chain is not None and unique is True else unique_opt,
            chain=chain,
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


# Long: a third is the docstring; `decorate` is a closure over the options checked first.
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


_RESOLVERS: list[Callable[[str], Worker | None]] = []


def add_resolver(resolve: Callable[[str], Worker | None]) -> None:
    """Let `resolve(name)` supply the worker of a name no module registered (None if it has
    none): how an integration runs jobs named after its own callables (Django's tasks)."""
    if resolve not in _RESOLVERS:
        _RESOLVERS.append(resolve)


def register(registered: Worker) -> None:
    """Register a Worker built outside `@worker` (a trigger); a name held by other code is
    refused as for `@worker`."""
    _check_name_free(registered.name, registered.target)
    _REGISTRY[registered.name] = registered


def unregister(name: str) -> None:
    """Forget the worker called `name` (nothing if there is none)."""
    _REGISTRY.pop(name, None)


def lookup(name: str) -> Worker:
    """The registered worker called `name` (or the one a resolver supplies for it)."""
    found = _REGISTRY.get(name)
    if found is not None:
        return found
    for resolve in _RESOLVERS:
        found = resolve(name)
        if found is not None:
            _REGISTRY[name] = found
            return found
    raise UnknownWorker(f"unknown worker {name!r}; is its module in --app?")


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
