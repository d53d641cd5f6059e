"""Building jobs: the fast path for inserted jobs builds what the dataclass would."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from jobrunner.core.job import Job, JobState, inserted, new_inserted_job


def test_an_inserted_job_is_the_dataclass_job() -> None:
    at = datetime(2030, 1, 2, tzinfo=UTC)
    built = new_inserted_job("q", "w", {"a": 1}, {"m": 2}, ("t",), 3, 4)
    built = inserted(built, 7, JobState.SCHEDULED, at, at)
    expected = Job(
        id=7,
        state=JobState.SCHEDULED,
        queue="q",
        worker="w",
        args={"a": 1},
        meta={"m": 2},
        tags=("t",),
        max_attempts=3,
        priority=4,
        inserted_at=at,
        scheduled_at=at,
    )
    assert built == expected and repr(built) == repr(expected)
    for field in dataclasses.fields(Job):  # every slot set, a new field included
        assert getattr(built, field.name) == getattr(expected, field.name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.state = JobState.AVAILABLE  # type: ignore[misc]
    assert dataclasses.replace(built, attempt=1).attempt == 1
