"""`@trigger`: a worker declared on a model, its jobs one per record (args `{"pk": ...}`),
enqueued on demand (`new_for`) or by a scheduled scan of the records matching `where`."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from jobrunner.core import cron_sources
from jobrunner.core import worker as _worker
from jobrunner.core.config import CronEntry
from jobrunner.core.errors import ConfigError, InvalidJob, JobRunnerError
from jobrunner.core.job import Discard, Job
from jobrunner.core.new_job import DEFAULT_MAX_ATTEMPTS, DEFAULT_QUEUE, NewJob, Unique
from jobrunner.db.queries import triggers as _queries
from jobrunner.engine.executor import CURRENT_CLIENT
from jobrunner.plugins import cron as _cron
from jobrunner.triggers import scanning as _scanning
from jobrunner.triggers.base import Adapter, Enqueue, TriggerError, json_pk

log = structlog.get_logger("jobrunner.triggers")

PAGE_SIZE = 1_000
"""Records read, and jobs inserted, per statement of a scheduled scan."""

PER_RECORD = Unique(period=None, fields=["worker", "args"], states="incomplete")
"""A trigger's default: one incomplete job per record (the key `jobrunner_trigger_key`
computes in SQL)."""

_TRIGGERS: dict[str, Trigger] = {}


class Trigger(_worker.Worker):
    """A registered trigger: a worker whose job runs `action(record, job)` on one record."""

    __slots__ = ("adapter", "cron", "page_size", "scan_worker", "timezone")

    def __init__(
        self,
        *,
        adapter: Adapter,
        cron: str | None,
        timezone: str,
        page_size: int,
        **worker_options: Any,
    ) -> None:
        super().__init__(**worker_options)
        self.adapter, self.cron, self.timezone = adapter, cron, timezone
        self.page_size = page_size
        self.scan_worker: _worker.Worker | None = None

    def __repr__(self) -> str:
        return f"<jobrunner.Trigger {self.name!r} on {self.adapter.label}>"

    @property
    def model(self) -> Any:
        return self.adapter.model

    @property
    def cron_key(self) -> str:
        """The name of its crontab entry (`jobrunner_cron` keeps its last slot)."""
        return f"trigger:{self.name}"

    def new_for(
        self,
        record: Any,
        *,
        priority: int | None = None,
        schedule_in: float | timedelta | None = None,
        scheduled_at: datetime | None = None,
        meta: dict[str, Any] | None = None,
    ) -> NewJob:
        """The job of this trigger for `record`, to insert (in the caller's transaction, with
        `client.insert(job, conn=session)`).

        Example:
            >>> await client.insert(process_order.new_for(order), conn=session)
        """
        if not isinstance(record, self.model):
            raise TriggerError(
                f"trigger {self.name!r} is on {self.adapter.label}, got a {type(record).__name__}"
            )
        pk = self.adapter.pk_of(record)
        if pk is None:
            raise TriggerError(
                f"this {self.adapter.label} has no primary key yet; save it (a session "
                "flush, or create()) before new_for"
            )
        return self.new(
            {"pk": json_pk(pk, self.adapter.label)},
            priority=priority,
            schedule_in=schedule_in,
            scheduled_at=scheduled_at,
            meta=meta,
        )

    async def perform(self, job: Job) -> Any:
        """Load the record of `job`, re-check `where`, run the action; a record gone or out
        of `where` completes the job with the reason in its meta (`skipped`)."""
        if "pk" not in job.args:
            return Discard(f"a job of trigger {self.name!r} needs args {{'pk': ...}}")
        pk = self.adapter.from_args(job.args["pk"])
        ran = await self.adapter.run(pk, self._perform, job, sync=self.sync_action, dsn=_dsn)
        if ran.skipped is None:
            return ran.value
        log.info("trigger.skipped", trigger=self.name, job_id=job.id, pk=pk, reason=ran.skipped)
        job.meta["skipped"] = ran.skipped
        client = CURRENT_CLIENT.get(None)
        if client is not None and job.id:
            try:
                await _queries.merge_job_meta(client.pool, job, {"skipped": ran.skipped})
            except JobRunnerError:
                pass  # a client with no database (perform_job): the log says it
        return None

    @property
    def sync_action(self) -> bool:
        return not inspect.iscoroutinefunction(self.target)


def _dsn() -> str:
    client = CURRENT_CLIENT.get(None)
    try:
        if client is None:
            raise JobRunnerError("no client runs this job")
        return str(client.dsn)
    except JobRunnerError:
        raise JobRunnerError(
            "a trigger without session= loads its record from jobrunner's database: run it "
            "with a connected client (perform_job(..., client=client)) or give it session="
        ) from None


def trigger(
    model: Any,
    *,
    where: Any = None,
    cron: str | None = None,
    name: str | None = None,
    queue: str = DEFAULT_QUEUE,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    priority: int = 0,
    unique: Unique | None = PER_RECORD,
    tags: Iterable[str] = (),
    timeout: float | None = None,
    backoff: Callable[[Job], float] | None = None,
    session: Any = None,
    timezone: str = "UTC",
    page_size: int = PAGE_SIZE,
    on_write: bool = False,
) -> Callable[[Any], Trigger]:
    """Declare `action(record, job)` as the trigger on `model` called `name`.

    `model` is a SQLAlchemy mapped class (`where` a SQLAlchemy expression; `session` a
    `sessionmaker`/`async_sessionmaker`, default one on jobrunner's database) or a Django
    model (`where` a `Q`). With `cron`, a scan on each slot enqueues one job per record
    matching `where`; without, jobs come from `new_for(record)` (or SQL). Every worker
    option applies; `unique` defaults to one incomplete job per record. With `on_write`,
    the ORM's own events enqueue it too, for each record inserted or updated through the ORM
    so that it matches `where`, in the writer's transaction.

    Example:
        >>> @trigger(Order, where=Order.status == "pending", cron="*/5 * * * *",
        ...          queue="orders", max_attempts=3, name="orders.process")
        ... async def process_order(order: Order, job: Job) -> None: ...
    """
    return _Declared(
        model=model,
        where=where,
        cron=cron,
        name=name,
        queue=queue,
        max_attempts=max_attempts,
        priority=priority,
        unique=unique,
        tags=tuple(tags),
        timeout=timeout,
        backoff=backoff,
        session=session,
        timezone=timezone,
        page_size=page_size,
        on_write=on_write,
    ).define


@dataclass(frozen=True, slots=True)
class _Declared:
    """The options of one `@trigger(...)`, checked before the action is known."""

    model: Any
    where: Any
    cron: str | None
    name: str | None
    queue: str
    max_attempts: int
    priority: int
    unique: Unique | None
    tags: tuple[str, ...]
    timeout: float | None
    backoff: Callable[[Job], float] | None
    session: Any
    timezone: str
    page_size: int
    on_write: bool

    def __post_init__(self) -> None:
        try:
            _worker._validate_options(
                self.queue, self.max_attempts, self.priority, self.tags, self.timeout, self.unique
            )
        except InvalidJob as exc:
            raise TriggerError(f"trigger {self.name or 'on ' + repr(self.model)}: {exc}") from None
        size = self.page_size
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise TriggerError(f"page_size must be an integer >= 1, got {size!r}")

    def define(self, action: Any) -> Trigger:
        """Build and register the trigger of `action` (the decorator's second step)."""
        if not inspect.isfunction(action):
            raise TriggerError(f"a trigger's action must be a 'def' or 'async def', got {action!r}")
        name = self.name or f"{action.__module__}.{action.__qualname__}"
        adapter = _adapter(
            self.model, self.where, self.session, sync=not inspect.iscoroutinefunction(action)
        )
        self._check(action, name, adapter)
        built = Trigger(
            adapter=adapter,
            cron=self.cron,
            timezone=self.timezone,
            page_size=self.page_size,
            name=name,
            target=action,
            perform=action,
            backoff=self.backoff,
            timeout_fn=None,
            queue=self.queue,
            max_attempts=self.max_attempts,
            priority=self.priority,
            tags=self.tags,
            timeout=self.timeout,
            unique=self.unique,
        )
        _register(built)
        if self.on_write:
            adapter.on_write(Enqueue(name, self.queue, self.priority, self.max_attempts))
        return built

    def _check(self, action: Any, name: str, adapter: Adapter) -> None:
        if self.cron is not None and not adapter.has_where:
            raise TriggerError(
                f"scheduled trigger {name!r} needs a where: without one each scan enqueues "
                "every record again"
            )
        try:
            inspect.signature(action).bind(None, None)
        except TypeError:
            raise TriggerError(f"trigger {name!r} action must take (record, job)") from None
        if self.on_write and self.unique != PER_RECORD:
            raise TriggerError(
                f"trigger {name!r}: on_write enqueues with the default unique (one "
                "incomplete job per record); drop unique= or on_write"
            )


def _adapter(model: Any, where: Any, session: Any, *, sync: bool) -> Adapter:
    """The adapter of `model`'s ORM: only an ORM already imported (the model's) is asked."""
    if "django.db.models" in sys.modules:
        from jobrunner.triggers import django as _django

        if _django.is_model(model):
            if session is not None:
                raise TriggerError("session= is for SQLAlchemy models; Django uses its own ORM")
            return _django.DjangoAdapter(model, where)
    if "sqlalchemy.orm" in sys.modules:
        from jobrunner.triggers import sqlalchemy as _sa

        if _sa.is_model(model):
            return _sa.SqlAlchemyAdapter(model, where, session, sync=sync)
    raise TriggerError(
        f"a trigger's model must be a SQLAlchemy mapped class or a Django model, got {model!r}"
    )


def _register(built: Trigger) -> None:
    """Register the trigger as a worker, and its scan with the crontab when it has a cron."""
    existing = _TRIGGERS.get(built.name)
    if existing is not None and _origin(existing) != _origin(built):
        raise TriggerError(
            f"two triggers are called {built.name!r} ({_origin(existing)} and "
            f"{_origin(built)}); give one of them another name="
        )
    try:
        _worker.register(built)
    except ValueError as exc:
        raise TriggerError(str(exc)) from None
    if built.cron is not None:
        _schedule(built)
    _TRIGGERS[built.name] = built


def _origin(built: Trigger) -> str:
    return f"{built.target.__module__}.{built.target.__qualname__}"


def _schedule(built: Trigger) -> None:
    """Register the trigger's scan worker and its crontab entry (ConfigError -> TriggerError)."""
    scan = _scanning.scan_worker(built)
    _worker.register(scan)
    built.scan_worker = scan
    entry = CronEntry(
        schedule=str(built.cron),
        worker=scan.name,
        queue=built.queue,
        priority=built.priority,
        max_attempts=built.max_attempts,
        timezone=built.timezone,
        name=built.cron_key,
    )
    try:
        _cron.parse(entry)
    except (ConfigError, InvalidJob) as exc:
        _worker.unregister(scan.name)
        _worker.unregister(built.name)
        raise TriggerError(f"trigger {built.name!r}: {exc}") from None
    cron_sources.add(entry)


def registered() -> dict[str, Trigger]:
    """The triggers defined so far (their modules imported), name -> trigger."""
    return dict(_TRIGGERS)


def lookup(name: str) -> Trigger:
    """The trigger called `name` (TriggerError listing the known ones otherwise)."""
    found = _TRIGGERS.get(name)
    if found is None:
        known = ", ".join(sorted(_TRIGGERS)) or "none; is its module in --app?"
        raise TriggerError(f"unknown trigger {name!r}; known: {known}")
    return found
