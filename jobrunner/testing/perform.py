"""perform_job: one job through the executor with no database, as a unit test runs it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from jobrunner.client import Client
from jobrunner.core.config import Settings
from jobrunner.core.errors import InvalidJob, JobRunnerError
from jobrunner.core.job import Job, JobError, JobState
from jobrunner.core.worker import Worker, as_worker, now_utc
from jobrunner.engine import executor as _executor

_FINISHED_FIELDS = {"state", "completed_at", "discarded_at", "cancelled_at", "conflict"}
_JOB_FIELDS = (
    frozenset(f.name for f in dataclasses.fields(Job)) - _FINISHED_FIELDS - {"worker", "args"}
)
_NEW_JOB_FIELDS = ("queue", "priority", "max_attempts", "tags", "meta")


class _NoDatabase(Client):
    """The client a job run by perform_job sees: there is no database behind it."""

    @property
    def pool(self) -> asyncpg.Pool:
        raise JobRunnerError(
            "perform_job runs the worker without a database; "
            "pass perform_job(..., client=client) to let it use one"
        )


async def perform_job(
    worker: Worker | type | str,
    args: dict[str, Any] | None = None,
    *,
    client: Client | None = None,
    **job_fields: Any,
) -> Any:
    """Run one job of `worker` now, as the daemon would, and return what the worker returned.

    The job is built as the daemon hands it over: executing, attempt 1, the worker's queue,
    priority, tags and max_attempts, and `args` (and `meta`) round-tripped through JSON, so
    a test catches args that could not be inserted. `job_fields` override any of
    id, queue, priority, max_attempts, tags, meta, attempt, errors, inserted_at,
    scheduled_at, attempted_at, attempted_by and unique_key. The worker runs through the
    executor, with its timeout; `jobrunner.current_client()` inside it is `client`, which
    is needed only if the worker uses the database (to enqueue follow-up jobs, say).

    Returns:
        The worker's return value: None, or a Record, Snooze, Cancel or Discard.

    Raises:
        UnknownWorker: `worker` is not a worker or not a registered name.
        InvalidJob: args or a field is not what an insert accepts.
        TypeError: an unknown job field.
        Exception: whatever the worker raised (a `JobTimeout` when it ran past its timeout).

    Example:
        >>> assert await perform_job(send_email, {"user_id": 42}) is None
        >>> assert await perform_job(send_email, {"user_id": 0}) == Discard("no such user")
        >>> with pytest.raises(ConnectionError):
        ...     await perform_job("myapp.workers.send_email", {"user_id": 7}, attempt=3)
    """
    target = as_worker(worker)
    job = build_job(target, args, **job_fields)
    runner = client if client is not None else _NoDatabase(settings=Settings(), testing="manual")
    result = await _executor.execute(job, runner, worker=target)
    if result.exception is not None:
        raise result.exception
    return result.value


def build_job(worker: Worker, args: dict[str, Any] | None = None, **job_fields: Any) -> Job:
    """The Job the daemon would hand `worker` for `args`; see `perform_job` for the fields.

    Example:
        >>> build_job(send_email.worker, {"user_id": 1}, attempt=2).attempt
        2
    """
    unknown = sorted(set(job_fields) - _JOB_FIELDS)
    if unknown:
        raise TypeError(
            f"unknown job field {unknown[0]!r}; "
            f"perform_job accepts {', '.join(sorted(_JOB_FIELDS))}"
        )
    options = {name: job_fields.pop(name) for name in _NEW_JOB_FIELDS if name in job_fields}
    new = worker.new(args, unique=False, **options)  # validates as an insert would
    now = now_utc()
    job = Job(
        id=1,
        state=JobState.EXECUTING,
        queue=new.queue,
        worker=new.worker,
        args=json.loads(new.encoded_args()),
        meta=json.loads(new.encoded_meta()),
        tags=new.tags,
        attempt=1,
        max_attempts=new.max_attempts,
        priority=new.priority,
        inserted_at=now,
        scheduled_at=now,
        attempted_at=now,
        attempted_by=(_executor.inline_node(),),
    )
    if "errors" in job_fields:
        job_fields["errors"] = tuple(
            JobError(**e) if isinstance(e, Mapping) else e for e in job_fields["errors"]
        )
    if "attempted_by" in job_fields:
        job_fields["attempted_by"] = tuple(job_fields["attempted_by"])
    job = dataclasses.replace(job, **job_fields)
    _check_job(job)
    return job


def _check_job(job: Job) -> None:
    if not isinstance(job.id, int) or isinstance(job.id, bool) or job.id < 1:
        raise InvalidJob(f"id must be an integer >= 1, got {job.id!r}")
    if (
        not isinstance(job.attempt, int)
        or isinstance(job.attempt, bool)
        or not 1 <= job.attempt <= job.max_attempts
    ):
        raise InvalidJob(
            f"attempt must be an integer from 1 to max_attempts "
            f"({job.max_attempts}), got {job.attempt!r}"
        )
    for name in ("inserted_at", "scheduled_at", "attempted_at"):
        value = getattr(job, name)
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise InvalidJob(f"{name} must be a timezone-aware datetime, got {value!r}")
