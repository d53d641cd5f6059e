"""Job values: the stored job, its states, and what a worker may return."""

from __future__ import annotations

import contextvars
import json
import math
import re
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    """Where a job is in its life; the values are the database's."""

    AVAILABLE = "available"
    SCHEDULED = "scheduled"
    EXECUTING = "executing"
    RETRYABLE = "retryable"
    COMPLETED = "completed"
    DISCARDED = "discarded"
    CANCELLED = "cancelled"


# In a sync worker's thread: (job id, attempt, flag) of the attempt it runs; the flag is set
# once that attempt was stopped (a timeout, a cancel, a shutdown).
_stop_flag: contextvars.ContextVar[tuple[int, int, threading.Event] | None] = (
    contextvars.ContextVar("jobrunner_stop_flag", default=None)
)

# While a worker runs an attempt: what reads the results a workflow step's deps recorded (the
# engine sets it to the running client's statement; core does no I/O of its own).
dep_results_reader: contextvars.ContextVar[Callable[[int], Awaitable[dict[str, Any]]] | None] = (
    contextvars.ContextVar("jobrunner_dep_results", default=None)
)

FINISHED_STATES = (JobState.COMPLETED, JobState.DISCARDED, JobState.CANCELLED)
_STATES = {state.value: state for state in JobState}


@dataclass(frozen=True, slots=True)
class JobError:
    """One failed attempt, as recorded in `Job.errors`."""

    attempt: int
    at: str
    error: str
    traceback: str | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """A job as stored in PostgreSQL.

    Example:
        >>> job = await client.get_job(42)
        >>> job.state, job.args["user_id"], job.attempt
    """

    id: int
    state: JobState
    queue: str
    worker: str
    args: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    errors: tuple[JobError, ...] = ()
    attempt: int = 0
    max_attempts: int = 20
    priority: int = 0
    inserted_at: datetime | None = None
    scheduled_at: datetime | None = None
    attempted_at: datetime | None = None
    completed_at: datetime | None = None
    discarded_at: datetime | None = None
    cancelled_at: datetime | None = None
    attempted_by: tuple[str, ...] = ()
    unique_key: str | None = None
    conflict: bool = False
    # What the worker recorded with `Record(value)` when the job completed (None: nothing).
    # Read by `get_job`; the jobs a claim hands to a worker do not carry it.
    result: Any = None
    # The workflow this job is a step of, and the step's name (read by `get_job` and the
    # testing assertions; None for a job of no workflow, and in the jobs a claim hands over).
    workflow_id: int | None = None
    step: str | None = None
    # The exception the attempt being retried raised, for a worker's backoff(); never stored.
    unsaved_error: BaseException | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_record(cls, row: Mapping[str, Any], *, conflict: bool = False) -> Job:
        """Build a job from a row of `jobrunner_jobs` (json columns as text)."""
        # Most jobs have no meta and no errors: skip decoding those (this runs per job fetched).
        raw_errors, raw_meta = row["errors"], row["meta"]
        errors = () if raw_errors == "[]" else tuple(JobError(**e) for e in json.loads(raw_errors))
        return cls(
            id=row["id"],
            state=_STATES[row["state"]],
            queue=row["queue"],
            worker=row["worker"],
            args=json.loads(row["args"]),
            meta={} if raw_meta == "{}" else json.loads(raw_meta),
            tags=tuple(row["tags"]),
            errors=errors,
            attempt=row["attempt"],
            max_attempts=row["max_attempts"],
            priority=row["priority"],
            inserted_at=row["inserted_at"],
            scheduled_at=row["scheduled_at"],
            attempted_at=row["attempted_at"],
            completed_at=row["completed_at"],
            discarded_at=row["discarded_at"],
            cancelled_at=row["cancelled_at"],
            attempted_by=tuple(row["attempted_by"] or ()),
            unique_key=row["unique_key"],
            conflict=conflict,
            result=_result(row),
            workflow_id=_optional(row, "workflow_id"),
            step=_optional(row, "step"),
        )

    @property
    def is_final_attempt(self) -> bool:
        """True when a failure now would discard the job: the attempt running is the last.

        Example:
            >>> if job.is_final_attempt:
            ...     await mark_failed(job.args["resource_id"])
        """
        return self.attempt >= self.max_attempts

    @property
    def snoozed(self) -> int:
        """How many times this job snoozed (kept in `meta["snoozed"]`, as Oban keeps it).

        A snooze does not use an attempt: `attempt` counts only the runs that ended
        otherwise, so a worker that snoozes a bounded number of times reads this count.

        Example:
            >>> if job.snoozed < 5:
            ...     return Snooze((job.snoozed + 1) * 60)
        """
        count = self.meta.get("snoozed", 0)
        return count if isinstance(count, int) and not isinstance(count, bool) else 0

    async def dep_results(self) -> dict[str, Any]:
        """What this workflow step's deps recorded with `Record`, by step name (None: a dep
        that recorded nothing); call it from the step's async worker. Elsewhere, and in a
        sync worker, `client.dep_results(job)` does the same.

        Example:
            >>> @worker(queue="etl")
            ... async def load(job: Job) -> None:
            ...     deps = await job.dep_results()      # {"extract": {...}, ...}
        """
        reader = dep_results_reader.get()
        if reader is None:
            raise RuntimeError(
                "job.dep_results() works inside a worker's attempt; elsewhere use "
                "client.dep_results(job)"
            )
        return await reader(self.id)

    def cancelled(self) -> bool:
        """True once this attempt of a sync worker was stopped: it timed out, was cancelled,
        or the node is shutting down past its grace.

        A thread cannot be interrupted, so a long sync job checks this between steps and
        returns early; whatever it returns after being stopped is ignored. An async worker
        is stopped by `asyncio.CancelledError` instead, and this stays False for it.

        Example:
            >>> @worker(timeout=60)
            ... def export(job: Job) -> None:
            ...     for chunk in chunks(job.args["table"]):
            ...         if job.cancelled():
            ...             return
            ...         write(chunk)
        """
        stop = _stop_flag.get()
        return stop is not None and stop[:2] == (self.id, self.attempt) and stop[2].is_set()


def _optional(row: Mapping[str, Any], name: str) -> Any:
    """Column `name` of a row that selected it, else None."""
    try:
        return row[name]
    except (KeyError, IndexError):
        return None


def _result(row: Mapping[str, Any]) -> Any:
    """The recorded result of a row that selected it (json as text), else None."""
    raw = _optional(row, "result")
    return None if raw is None else json.loads(raw)


# Jobs built for insert_all, which returns thousands at once. A frozen dataclass's __init__
# sets each field through object.__setattr__; setting the slots directly takes half the time.
def _slot(name: str) -> Callable[[Job, Any], None]:
    setter: Callable[[Job, Any], None] = Job.__dict__[name].__set__
    return setter


_new = object.__new__
_id = _slot("id")
_state = _slot("state")
_queue = _slot("queue")
_worker = _slot("worker")
_args = _slot("args")
_meta = _slot("meta")
_tags = _slot("tags")
_errors = _slot("errors")
_attempt = _slot("attempt")
_max_attempts = _slot("max_attempts")
_priority = _slot("priority")
_inserted_at = _slot("inserted_at")
_scheduled_at = _slot("scheduled_at")
_attempted_at = _slot("attempted_at")
_completed_at = _slot("completed_at")
_discarded_at = _slot("discarded_at")
_cancelled_at = _slot("cancelled_at")
_attempted_by = _slot("attempted_by")
_unique_key = _slot("unique_key")
_conflict = _slot("conflict")
_result_slot = _slot("result")
_workflow_id = _slot("workflow_id")
_step = _slot("step")
_unsaved_error = _slot("unsaved_error")


def new_inserted_job(
    queue: str,
    worker: str,
    args: dict[str, Any],
    meta: dict[str, Any],
    tags: tuple[str, ...],
    max_attempts: int,
    priority: int,
) -> Job:
    """A job being inserted that is not unique, before the database has given its id, state
    and times: call `inserted` with them before anyone sees the job.

    insert_all builds its jobs while the database inserts them.
    """
    job: Job = _new(Job)
    _queue(job, queue)
    _worker(job, worker)
    _args(job, args)
    _meta(job, meta)
    _tags(job, tags)
    _errors(job, ())
    _attempt(job, 0)
    _max_attempts(job, max_attempts)
    _priority(job, priority)
    _attempted_at(job, None)
    _completed_at(job, None)
    _discarded_at(job, None)
    _cancelled_at(job, None)
    _attempted_by(job, ())
    _unique_key(job, None)
    _conflict(job, False)
    _result_slot(job, None)
    _workflow_id(job, None)
    _step(job, None)
    _unsaved_error(job, None)
    return job


def inserted(
    job: Job, id: int, state: JobState, inserted_at: datetime, scheduled_at: datetime
) -> Job:
    """`job` from `new_inserted_job`, complete with what the database decided."""
    _id(job, id)
    _state(job, state)
    _inserted_at(job, inserted_at)
    _scheduled_at(job, scheduled_at)
    return job


MAX_DELAY_S = 100 * 365 * 86_400.0
"""The longest delay a job takes (snooze, backoff, schedule_in): 100 years, so that every
scheduled time stays one that both Python and PostgreSQL represent."""


def check_delay(what: str, seconds: object) -> float:
    """`seconds` as a float if it is a usable delay, else ValueError naming `what`."""
    if (
        isinstance(seconds, int | float)
        and not isinstance(seconds, bool)
        and math.isfinite(seconds)
        and 0 <= seconds <= MAX_DELAY_S
    ):
        return float(seconds)
    raise ValueError(
        f"{what} must be seconds from 0 to {MAX_DELAY_S:.0f} (100 years), got {seconds!r}"
    )


@dataclass(frozen=True, slots=True)
class Snooze:
    """Return from a worker to run the job again in `seconds`, without using an attempt.

    `seconds` is a finite number from 0 to 100 years; anything else raises ValueError,
    which fails the attempt like any other exception.
    """

    seconds: float

    def __post_init__(self) -> None:
        check_delay("snooze seconds", self.seconds)


@dataclass(frozen=True, slots=True)
class Cancel:
    """Return from a worker to stop the job for good, as cancelled."""

    reason: str = "cancelled"


@dataclass(frozen=True, slots=True)
class Discard:
    """Return from a worker to stop the job for good, as discarded."""

    reason: str = "discarded"


MAX_RESULT_BYTES = 1_000_000
"""The largest recorded result: its JSON text, UTF-8 encoded, in bytes."""


@dataclass(frozen=True, slots=True)
class Record:
    """Return from a worker to complete the job and store `value` with it.

    `value` is anything `json.dumps` takes (dicts, lists, strings, numbers, booleans,
    None) of at most `MAX_RESULT_BYTES` (1 MB) once encoded; read it back with
    `client.get_job(id).result`, or from a dependent workflow step with
    `client.dep_results(job)`. A value that is not JSON, holds NaN or infinity or a NUL
    character (PostgreSQL's jsonb stores none of them), or is too large raises ValueError
    here, which fails the attempt like any other exception.

    Example:
        >>> @worker(queue="reports")
        ... async def count_rows(job: Job) -> Record:
        ...     return Record({"rows": await count(job.args["table"])})
    """

    value: Any
    encoded: str = field(init=False, repr=False, compare=False)  # the JSON text stored

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoded", encode_result(self.value))


# An escaped NUL in JSON text, not an escaped backslash followed by "u0000".
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def encode_result(value: Any) -> str:
    """`value` as the JSON text stored for a recorded result, or ValueError saying why not."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"a recorded result must be JSON: {exc}") from None
    if _NUL.search(text):
        raise ValueError("a recorded result cannot hold a NUL character (\\u0000)")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("a recorded result cannot hold a lone surrogate character") from None
    if size > MAX_RESULT_BYTES:
        raise ValueError(
            f"a recorded result is at most {MAX_RESULT_BYTES} bytes of JSON, got {size}; "
            "store large data elsewhere and record a reference to it"
        )
    return text


Outcome = Snooze | Cancel | Discard | Record | None

ALL_STATES: Sequence[JobState] = tuple(JobState)
