"""What the Oban guides do with workers: snooze counts and the seeds' snooze patterns,
custom backoff on function workers with the error in hand, the final attempt, and a
return value that is not an outcome."""

from __future__ import annotations

import asyncio

import pytest
import structlog

import jobrunner
from jobrunner import Job, JobState, Snooze, worker
from tests.helpers import eventually

QUEUE = "guides"


async def ended(client: jobrunner.Client, job_id: int, state: JobState) -> Job:
    async def check() -> Job:
        job = await client.get_job(job_id)
        assert job is not None and job.state is state, job
        return job

    return await eventually(check, 20)


class ServiceTimeout(Exception):
    pass


calls: list[tuple[int, int, bool]] = []


# The seeds' bounded pattern (a timeout snoozes a growing delay while it has snoozed fewer
# than 5 times, then it is an error like any other), as the README writes it; `unit` is 60
# there, a hundredth of a second here.
@worker(queue=QUEUE, max_attempts=2, backoff=lambda job: 0)
async def fragile(job: Job) -> Snooze | None:
    calls.append((job.attempt, job.snoozed, job.is_final_attempt))
    try:
        raise ServiceTimeout("the service timed out")
    except ServiceTimeout:
        if job.snoozed < 5:
            return Snooze((job.snoozed + 1) * job.args["unit"])
        raise


async def test_the_bounded_snooze_pattern_ends_discarded_after_five_snoozes(
    client: jobrunner.Client, make_runner
) -> None:
    calls.clear()
    async with make_runner(queues={QUEUE: 1}):
        inserted = await client.insert(fragile.new({"unit": 0.01}))
        job = await ended(client, inserted.id, JobState.DISCARDED)
    assert job.snoozed == 5 and job.meta == {"snoozed": 5}
    assert job.attempt == 2 and len(job.errors) == 2
    # attempt stays 1 across the snoozes; the two errors use the two attempts
    assert calls == [(1, n, False) for n in range(6)] + [(2, 5, True)]


class RateLimited(Exception):
    pass


# The seeds' exponential pattern, bounded as the README writes it (unit: 60 there).
@worker(queue=QUEUE, max_attempts=1)
async def rate_limited(job: Job) -> Snooze | None:
    try:
        raise RateLimited("429")
    except RateLimited:
        if job.snoozed < 8:
            return Snooze(2**job.snoozed * job.args["unit"])
        raise


async def test_the_exponential_snooze_pattern_ends_after_eight_snoozes(
    client: jobrunner.Client, make_runner
) -> None:
    async with make_runner(queues={QUEUE: 1}):
        inserted = await client.insert(rate_limited.new({"unit": 0.001}))
        job = await ended(client, inserted.id, JobState.DISCARDED)
    assert job.snoozed == 8 and job.attempt == 1 and len(job.errors) == 1


seen_errors: list[BaseException | None] = []


@worker(queue=QUEUE, max_attempts=3, backoff=lambda job: _record(job))
async def flaky(job: Job) -> None:
    raise ValueError(f"attempt {job.attempt}")


def _record(job: Job) -> float:
    seen_errors.append(job.unsaved_error)
    return 0.0 if isinstance(job.unsaved_error, ValueError) else 3600.0


@worker(queue=QUEUE, max_attempts=2)
class FlakyClass:
    async def perform(self, job: Job) -> None:
        raise KeyError("missing")

    def backoff(self, job: Job) -> float:
        seen_errors.append(job.unsaved_error)
        return 0.0


async def test_backoff_of_a_function_worker_sees_the_error(
    client: jobrunner.Client, make_runner
) -> None:
    seen_errors.clear()
    async with make_runner(queues={QUEUE: 1}):
        inserted = await client.insert(flaky.new({}))
        job = await ended(client, inserted.id, JobState.DISCARDED)
        klass = await client.insert(FlakyClass.new({}))  # type: ignore[attr-defined]
        await ended(client, klass.id, JobState.DISCARDED)
    assert job.attempt == 3  # each retry came at once: the backoff read a ValueError
    assert [str(e) for e in seen_errors] == [
        "attempt 1",
        "attempt 2",
        "attempt 3",
        "'missing'",
        "'missing'",
    ]
    assert isinstance(seen_errors[-1], KeyError)
    assert (await client.get_job(inserted.id)).unsaved_error is None  # type: ignore[union-attr]


def test_backoff_must_be_callable() -> None:
    with pytest.raises(jobrunner.InvalidJob, match="backoff must be a function of the job"):
        worker(backoff=5)  # type: ignore[arg-type]


async def test_a_non_outcome_return_completes_with_one_warning_per_worker(
    client: jobrunner.Client, make_runner
) -> None:
    @worker(queue=QUEUE, name="guides.oban_habit")
    async def oban_habit(job: Job) -> object:
        return ("error", "boom")

    with structlog.testing.capture_logs() as logs:
        async with make_runner(queues={QUEUE: 1}):
            jobs = await client.insert_all([oban_habit.new({"n": n}) for n in range(3)])
            for inserted in jobs:
                await ended(client, inserted.id, JobState.COMPLETED)
    warnings = [e for e in logs if e["event"] == "job.unexpected_return"]
    assert len(warnings) == 1
    assert warnings[0]["worker"] == "guides.oban_habit"
    assert warnings[0]["returned"] == "('error', 'boom')"
    assert warnings[0]["log_level"] == "warning"


async def test_is_final_attempt(client: jobrunner.Client, make_runner) -> None:
    finals: asyncio.Queue[tuple[int, bool]] = asyncio.Queue()

    @worker(queue=QUEUE, max_attempts=3, backoff=lambda job: 0)
    async def cleanup_on_last(job: Job) -> None:
        finals.put_nowait((job.attempt, job.is_final_attempt))
        raise RuntimeError("no")

    async with make_runner(queues={QUEUE: 1}):
        inserted = await client.insert(cleanup_on_last.new({}))
        await ended(client, inserted.id, JobState.DISCARDED)
    assert [finals.get_nowait() for _ in range(3)] == [(1, False), (2, False), (3, True)]
