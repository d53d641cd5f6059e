"""`JobrunnerBackend`: Django's Tasks framework on jobrunner's queue.

    TASKS = {"default": {"BACKEND": "jobrunner.contrib.django.JobrunnerBackend",
                         "QUEUES": ["default", "emails"],
                         "OPTIONS": {"max_attempts": 5, "timeout": 300}}}

`task.enqueue()` inserts a job through Django's own connection (OPTIONS "database", default
"default"): inside `transaction.atomic()` it commits or rolls back with the caller's rows.
The job's worker is the task's module path, its args `{"args": [...], "kwargs": {...}}`;
`python manage.py jobrunner start` runs it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from jobrunner.contrib.django import database as _database
from jobrunner.contrib.django import results as _results
from jobrunner.contrib.django import tasks_api as api
from jobrunner.core.errors import InvalidJob
from jobrunner.core.job import Job
from jobrunner.core.new_job import DEFAULT_MAX_ATTEMPTS, NewJob, Unique
from jobrunner.core.worker import _validate_options
from jobrunner.db.queries import sync as sq

OPTION_NAMES = ("max_attempts", "timeout", "backoff", "unique", "tags")
"""jobrunner's options a Django task takes: backend OPTIONS defaults, per task overrides."""

Backoff = Callable[[Job], float]


def to_jobrunner_priority(priority: int) -> int:
    """Django's priority (-100..100, higher runs first) as jobrunner's (0..9, 0 runs first):
    100 -> 0, 0 (Django's default) -> 4, -100 -> 9; the order is kept."""
    return (100 - int(priority)) * 9 // 200


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobrunnerTask(api.Task):  # type: ignore[misc]
    """A Django task with jobrunner's options; the backend's `task_class`.

    With the django-tasks backport, `@task(max_attempts=5, timeout=60)` sets them; on
    Django 6, whose `@task` takes no other options, `@job_options(...)` above `@task` does.
    None means the backend's OPTIONS, then jobrunner's default.
    """

    max_attempts: int | None = None
    timeout: float | None = None
    backoff: Backoff | None = None
    unique: Unique | None = None
    tags: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _check_options({name: getattr(self, name) for name in OPTION_NAMES}, self.module_path)
        api.Task.__post_init__(self)


def job_options(
    *,
    max_attempts: int | None = None,
    timeout: float | None = None,
    backoff: Backoff | None = None,
    unique: Unique | None = None,
    tags: Iterable[str] | None = None,
) -> Callable[[Any], Any]:
    """Give a Django task jobrunner's options; put it above `@task`.

    Example:
        >>> @job_options(max_attempts=5, timeout=60, unique=Unique(period=300))
        ... @task(queue_name="emails")
        ... def send_welcome(user_id: int) -> None: ...
    """
    given: dict[str, Any] = {"max_attempts": max_attempts, "timeout": timeout}
    given |= {"backoff": backoff, "unique": unique, "tags": None if tags is None else _tags(tags)}

    def decorate(task: Any) -> Any:
        if not isinstance(task, JobrunnerTask):
            raise api.InvalidTask(
                f"@job_options goes above @task, on a task of a JobrunnerBackend; got {task!r}"
            )
        return dataclasses.replace(task, **{k: v for k, v in given.items() if v is not None})

    return decorate


class JobrunnerBackend(api.BaseTaskBackend):  # type: ignore[misc]
    """Django's Tasks backend on jobrunner: retries, timeouts, uniqueness, cron, cancel."""

    task_class = JobrunnerTask
    supports_defer = True
    supports_priority = True
    supports_get_result = True
    supports_async_task = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        options = dict(self.options)
        self.database: str = options.pop("database", "default")
        unknown = sorted(set(options) - set(OPTION_NAMES))
        if unknown:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS'] takes database and {', '.join(OPTION_NAMES)}; "
                f"unknown: {', '.join(unknown)}"
            )
        if isinstance(options.get("backoff"), str):
            options["backoff"] = import_string(options["backoff"])
        if options.get("tags") is not None:
            options["tags"] = _tags(options["tags"])
        try:
            _check_options(options, f"TASKS[{alias!r}]['OPTIONS']")
        except api.InvalidTask as exc:
            raise ImproperlyConfigured(str(exc)) from None
        self.defaults: dict[str, Any] = options

    def option(self, task: Any, name: str) -> Any:
        """jobrunner's option `name` for `task`: its own, else the backend's OPTIONS."""
        value = getattr(task, name, None)
        return self.defaults.get(name) if value is None else value

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        """Insert the job on Django's connection, in the caller's transaction if any."""
        new = self.new_job(task, args, kwargs)
        with _database.target(self.database, unique=new.unique is not None) as (conn, side):
            job = sq.insert_jobs(conn, [new], release_on=side)[0]
        result = _results.to_result(task, job, self.alias)
        api.task_enqueued.send(type(self), task_result=result)
        return result

    def new_job(self, task: Any, args: Any, kwargs: Any) -> NewJob:
        """The jobrunner job that runs `task(*args, **kwargs)`."""
        try:
            payload = json.loads(json.dumps({"args": list(args), "kwargs": dict(kwargs)}))
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"the arguments of task {task.module_path} are not JSON: {exc}"
            ) from None
        try:
            return NewJob(
                worker=task.module_path,
                args=payload,
                queue=task.queue_name,
                priority=to_jobrunner_priority(task.priority),
                max_attempts=self.option(task, "max_attempts") or DEFAULT_MAX_ATTEMPTS,
                tags=self.option(task, "tags") or (),
                meta={_results.META_KEY: self.alias},
                scheduled_at=task.run_after,
                unique=self.option(task, "unique"),
            )
        except InvalidJob as exc:
            raise api.InvalidTask(str(exc)) from None

    def get_result(self, result_id: str) -> Any:
        """The task's result read from its job (TaskResultDoesNotExist for an unknown id)."""
        job_id = _results.job_id(result_id)
        with _database.target(self.database) as (conn, _):
            job = sq.get_job(conn, job_id)
        if job is None:
            raise api.TaskResultDoesNotExist(result_id)
        return _results.to_result(_results.task_of(job, result_id), job, self.alias)

    def check(self, **kwargs: Any) -> Any:
        """System checks: the backend's database must be PostgreSQL."""
        yield from super().check(**kwargs)
        yield from _database.check_vendor(self.alias, self.database)


def _tags(tags: Iterable[str]) -> tuple[str, ...]:
    if isinstance(tags, str):
        raise api.InvalidTask(f"tags must be a list of strings, got {tags!r}")
    return tuple(tags)


def _check_options(options: dict[str, Any], where: str) -> None:
    """jobrunner's own checks of the options (InvalidTask naming `where`)."""
    backoff = options.get("backoff")
    if backoff is not None and not callable(backoff):
        raise api.InvalidTask(f"{where}: backoff must be a function of the job, got {backoff!r}")
    max_attempts = options.get("max_attempts")
    try:
        _validate_options(
            "default",
            DEFAULT_MAX_ATTEMPTS if max_attempts is None else max_attempts,
            0,
            options.get("tags") or (),
            options.get("timeout"),
            options.get("unique"),
        )
    except InvalidJob as exc:
        raise api.InvalidTask(f"{where}: {exc}") from None
