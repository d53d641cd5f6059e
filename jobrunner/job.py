"""Job values: the stored job, its states, and what a worker may return."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
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
        )

    @property
    def is_final_attempt(self) -> bool:
        """True when a failure now would discard the job."""
        return self.attempt >= self.max_attempts


@dataclass(frozen=True, slots=True)
class Snooze:
    """Return from a worker to run the job again in `seconds`, without using an attempt."""

    seconds: float

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError(f"snooze seconds must be >= 0, got {self.seconds!r}")


@dataclass(frozen=True, slots=True)
class Cancel:
    """Return from a worker to stop the job for good, as cancelled."""

    reason: str = "cancelled"


@dataclass(frozen=True, slots=True)
class Discard:
    """Return from a worker to stop the job for good, as discarded."""

    reason: str = "discarded"


Outcome = Snooze | Cancel | Discard | None

ALL_STATES: Sequence[JobState] = tuple(JobState)
