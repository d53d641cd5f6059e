"""Running Django tasks in jobrunner's daemon: a job's worker name is its task's module path,
resolved to a jobrunner Worker the first time a job of it runs.

Each run sends the framework's signals: `task_started` before the call, `task_finished` after
it (from inside the exception handler when the task raised, so a receiver logging with
`logger.exception` gets the traceback; status FAILED on the last attempt, READY when it
will be retried). A sync task runs in the runner's threads between two
`close_old_connections()`, as Django runs a request. What a task returns is recorded as its
job's result (`Record`): a value that is not JSON fails the attempt.
"""

from __future__ import annotations

import inspect
from typing import Any

from django.db import close_old_connections
from django.utils.module_loading import import_string

from jobrunner.contrib.django import results as _results
from jobrunner.contrib.django import tasks_api as api
from jobrunner.core import worker as _worker
from jobrunner.core.job import Job, Record
from jobrunner.core.new_job import DEFAULT_MAX_ATTEMPTS


def install() -> None:
    """Let the daemon run the jobs of Django tasks on a jobrunner backend."""
    _worker.add_resolver(resolve)


def resolve(name: str) -> _worker.Worker | None:
    """The Worker running the Django task at module path `name` (None if there is none)."""
    from jobrunner.contrib.django.backend import JobrunnerBackend, to_jobrunner_priority

    try:
        task = import_string(name)
    except ImportError:
        return None
    if not isinstance(task, api.Task):
        return None
    backend = api.task_backends[task.backend]
    if not isinstance(backend, JobrunnerBackend):
        return None
    sync = not inspect.iscoroutinefunction(task.func)
    return _worker.Worker(
        name=name,
        target=task.func,
        perform=_run_sync(task, backend) if sync else _run_async(task, backend),
        backoff=backend.option(task, "backoff"),
        timeout_fn=None,
        queue=task.queue_name,
        max_attempts=backend.option(task, "max_attempts") or DEFAULT_MAX_ATTEMPTS,
        priority=to_jobrunner_priority(task.priority),  # for jobs it inserts (a crontab's)
        tags=backend.option(task, "tags") or (),
        timeout=backend.option(task, "timeout"),
        unique=backend.option(task, "unique"),
        sync=sync,
    )


def _run_sync(task: Any, backend: Any) -> Any:
    def perform(job: Job) -> Any:
        close_old_connections()
        try:
            args, kwargs = _started(task, job, backend)
            try:
                recorded = Record(task.call(*args, **kwargs))
            except Exception:
                _failed(task, job, backend)
                raise
            return _succeeded(task, job, backend, recorded)
        finally:
            close_old_connections()

    return perform


def _run_async(task: Any, backend: Any) -> Any:
    async def perform(job: Job) -> Any:
        args, kwargs = _started(task, job, backend)
        try:
            recorded = Record(await task.acall(*args, **kwargs))
        except Exception:
            _failed(task, job, backend)
            raise
        return _succeeded(task, job, backend, recorded)

    return perform


def _started(task: Any, job: Job, backend: Any) -> tuple[list[Any], dict[str, Any]]:
    """Send task_started; the call's arguments (the context first, if the task takes it)."""
    result = _results.to_result(task, job, backend.alias, status="RUNNING")
    api.task_started.send(type(backend), task_result=result)
    args = list(job.args.get("args", []))
    if task.takes_context:
        args.insert(0, api.TaskContext(task_result=result))
    return args, dict(job.args.get("kwargs", {}))


def _failed(task: Any, job: Job, backend: Any) -> None:
    """Send task_finished from inside the handler of the task's exception."""
    status = "FAILED" if job.is_final_attempt else "READY"
    result = _results.to_result(task, job, backend.alias, status=status)
    api.task_finished.send(type(backend), task_result=result)


def _succeeded(task: Any, job: Job, backend: Any, recorded: Record) -> Record:
    """Send task_finished; the task's return value is recorded as the job's result."""
    result = _results.to_result(task, job, backend.alias, status="SUCCESSFUL")
    object.__setattr__(result, "_return_value", recorded.value)
    api.task_finished.send(type(backend), task_result=result)
    return recorded
