"""What a trigger needs from an ORM (the `Adapter` each ORM module implements), the
trigger's errors and the checks on a record's primary key."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from jobrunner.core.errors import JobRunnerError
from jobrunner.core.job import Job

GONE = "the record is gone"
NO_MATCH = "the record no longer matches the trigger's where"

Action = Callable[[Any, Job], Any]
Dsn = Callable[[], str]
"""The database URL to build a session from when the trigger was given none (read lazily:
the running client's)."""


class TriggerError(JobRunnerError, ValueError):
    """The trigger is not valid."""


@dataclass(frozen=True, slots=True)
class Ran:
    """What running a trigger's job on one record gave: the action's return value, or the
    reason it was skipped."""

    value: Any = None
    skipped: str | None = None


class Adapter(Protocol):
    """One model of one ORM, as a trigger sees it."""

    model: Any
    label: str
    """The model as users name it (`app.Order`, `myapp.models.Order`)."""
    pk_name: str
    """The primary key's column name."""
    table: str
    """The model's table name."""
    has_where: bool

    def pk_of(self, record: Any) -> Any:
        """The record's primary key, or None before it has one."""
        ...

    def from_args(self, value: Any) -> Any:
        """A primary key read back from a job's args, as the ORM takes it."""
        ...

    async def run(self, pk: Any, action: Action, job: Job, *, sync: bool, dsn: Dsn) -> Ran:
        """Load the record `pk` in a transaction, re-check `where` and run `action` on it;
        the transaction commits before this returns."""
        ...

    async def scan(self, after: Any, limit: int, *, dsn: Dsn) -> list[Any]:
        """Up to `limit` primary keys of records matching `where`, above `after` (None:
        from the first), in order."""
        ...

    async def count_matching(self, *, dsn: Dsn) -> int:
        """How many records match `where` now."""
        ...

    def where_sql(self) -> str:
        """`where` as a SQL condition on the row `NEW` (TriggerError if it cannot be)."""
        ...

    def on_write(self, enqueue: Enqueue) -> None:
        """Enqueue through the ORM's own events: for each record it inserts or updates
        that matches `where` after the write, in the writer's transaction."""
        ...


def json_pk(value: Any, label: str) -> int | str:
    """A primary key as it is stored in a job's args (TriggerError naming its type)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value
    raise TriggerError(
        f"{label} has a primary key of type {type(value).__name__}, which is not "
        "JSON-serialisable; a trigger takes integer, text or UUID primary keys"
    )


@dataclass(frozen=True, slots=True)
class Enqueue:
    """What the ORM's write events insert for a trigger, through `jobrunner_insert_job`."""

    worker: str
    queue: str
    priority: int
    max_attempts: int


# $1 worker, $2 primary key (jsonb), $3 queue, $4 priority, $5 max_attempts: the trigger's job
# for one record, unique per record while incomplete (the key `new_for` and scans give it).
ENQUEUE_SQL = (
    "SELECT jobrunner_insert_job({0}, jsonb_build_object('pk', {1}), {2}, {3}, {4}, NULL, "
    "jobrunner_trigger_key({0}, {1}))"
)
