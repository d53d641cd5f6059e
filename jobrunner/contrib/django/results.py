"""A jobrunner job read as the Tasks framework's `TaskResult`.

status: available, scheduled, retryable -> READY; executing -> RUNNING; completed ->
SUCCESSFUL; discarded, cancelled -> FAILED. enqueued_at is the insert, started_at and
last_attempted_at the latest attempt's start, finished_at the completion, discard or cancel.
worker_ids holds the node of each attempt (so `attempts` counts them), errors each exception
an attempt raised, return_value what the task returned (recorded as the job's result).
"""

from __future__ import annotations

import re
from typing import Any

from django.utils.module_loading import import_string

from jobrunner.contrib.django import tasks_api as api
from jobrunner.core.job import Job, JobError, JobState

META_KEY = "django_backend"
"""The key of a job's meta naming the Tasks backend that enqueued it."""

_STATUS = {
    JobState.AVAILABLE: "READY",
    JobState.SCHEDULED: "READY",
    JobState.RETRYABLE: "READY",
    JobState.EXECUTING: "RUNNING",
    JobState.COMPLETED: "SUCCESSFUL",
    JobState.DISCARDED: "FAILED",
    JobState.CANCELLED: "FAILED",
}


def job_id(result_id: Any) -> int:
    """The job id of a result id (TaskResultDoesNotExist for one that cannot be)."""
    text = str(result_id)
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise api.TaskResultDoesNotExist(result_id)
    return int(text)


def task_of(job: Job, result_id: str) -> Any:
    """The Django task a job runs (TaskResultDoesNotExist if it is no longer importable)."""
    try:
        found = import_string(job.worker)
    except ImportError:
        raise api.TaskResultDoesNotExist(
            f"{result_id}: its task {job.worker} cannot be imported"
        ) from None
    if not isinstance(found, api.Task):
        raise api.TaskResultDoesNotExist(f"{result_id}: {job.worker} is not a Django task")
    return found


def to_result(task: Any, job: Job, backend: str, *, status: str | None = None) -> Any:
    """`job` as a TaskResult of `task` (`status` overrides the one the job's state maps to)."""
    if task.queue_name != job.queue:
        try:
            task = task.using(queue_name=job.queue)
        except api.InvalidTask:  # a queue the backend no longer lists: the task as defined
            pass
    finished = job.completed_at or job.discarded_at or job.cancelled_at
    node = job.attempted_by[0] if job.attempted_by else ""
    result = api.TaskResult(
        task=task,
        id=str(job.id),
        status=api.TaskResultStatus[status or _STATUS[job.state]],
        enqueued_at=job.inserted_at,
        started_at=job.attempted_at,
        finished_at=finished,
        last_attempted_at=job.attempted_at,
        args=job.args.get("args", []),
        kwargs=job.args.get("kwargs", {}),
        backend=backend,
        errors=[task_error(e) for e in job.errors if e.traceback],
        worker_ids=[node] * job.attempt,
    )
    if job.state == JobState.COMPLETED:
        object.__setattr__(result, "_return_value", job.result)
    return result


def task_error(error: JobError) -> Any:
    """One raised exception of a job's errors as a TaskError (its class path, traceback)."""
    return api.TaskError(
        exception_class_path=class_path(error.error, error.traceback or ""),
        traceback=error.traceback or "",
    )


def class_path(message: str, traceback: str) -> str:
    """The exception's class path, read off the traceback's line that states it.

    Python writes `module.Class: message` there (bare for builtins); `message` is jobrunner's
    `Class: message` form."""
    name = message.partition(":")[0].strip()
    if not name.isidentifier():
        return "builtins.Exception"
    stated = re.compile(rf"^((?:[\w]+\.)*){re.escape(name)}(?::|$)")
    for line in reversed(traceback.splitlines()):
        found = stated.match(line)
        if found:
            module = found.group(1).rstrip(".")
            return f"{module}.{name}" if module else f"builtins.{name}"
    return f"builtins.{name}"
