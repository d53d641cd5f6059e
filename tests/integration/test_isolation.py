"""An outcome or a row the database cannot take affects only its own job."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import asyncpg
import pytest

import jobrunner
from jobrunner import Cancel, Job, JobState, Snooze, worker
from jobrunner.db import queries as _queries
from jobrunner.db.queries import Ack
from jobrunner.engine.acker import Acker
from jobrunner.engine.executor import MAX_ERRORS, MESSAGE_CAP, TRACEBACK_CAP
from tests.helpers import eventually

BAD, GOOD = "iso_bad", "iso_good"


async def ended(client: jobrunner.Client, job_id: int, *states: JobState) -> Job:
    async def check() -> Job:
        job = await client.get_job(job_id)
        assert job is not None and job.state in states, job
        return job

    return await eventually(check, 20)


@worker(queue=GOOD)
async def healthy(job: Job) -> None:
    return None


async def healthy_complete(client: jobrunner.Client, count: int = 20) -> None:
    """`count` healthy jobs, inserted now, all complete."""
    jobs = await client.insert_all([healthy.new({"i": i}) for i in range(count)])
    for job in jobs:
        await ended(client, job.id, JobState.COMPLETED)


@pytest.mark.parametrize(
    ("raised", "stored"),
    [
        (ValueError("abc\x00def"), "ValueError: abc\\x00def"),
        (OSError("cannot open 'caf\udce9.txt'"), "OSError: cannot open 'caf\\udce9.txt'"),
    ],
    ids=["nul", "surrogate"],
)
async def test_an_error_text_postgresql_refuses_is_stored_escaped(
    client, make_runner, raised: Exception, stored: str
) -> None:
    @worker(queue=BAD, max_attempts=3)
    async def bad(job: Job) -> None:
        raise raised

    async with make_runner(queues={BAD: 2, GOOD: 4}):
        failing = await client.insert(bad.new({}))
        job = await ended(client, failing.id, JobState.RETRYABLE)
        await healthy_complete(client)
    assert job.errors[-1].error == stored
    assert job.errors[-1].traceback is not None and stored in job.errors[-1].traceback


async def test_a_cancel_reason_with_a_nul_is_stored_escaped(client, make_runner) -> None:
    @worker(queue=BAD)
    async def cancels(job: Job) -> Cancel:
        return Cancel("why\x00not")

    async with make_runner(queues={BAD: 2, GOOD: 4}):
        inserted = await client.insert(cancels.new({}))
        job = await ended(client, inserted.id, JobState.CANCELLED)
        await healthy_complete(client)
    assert job.errors[-1].error == "why\\x00not"


@pytest.mark.parametrize("seconds", [math.inf, math.nan, -1.0, 1e300])
async def test_a_snooze_out_of_range_fails_the_attempt_with_a_clear_error(
    client, make_runner, seconds: float
) -> None:
    @worker(queue=BAD, max_attempts=1)
    async def snoozes(job: Job) -> Snooze:
        return Snooze(seconds)

    async with make_runner(queues={BAD: 2, GOOD: 4}):
        inserted = await client.insert(snoozes.new({}))
        job = await ended(client, inserted.id, JobState.DISCARDED)
        await healthy_complete(client)
    assert job.errors[-1].error.startswith("ValueError: snooze seconds must be seconds from 0 to")


@pytest.mark.parametrize("backoff_s", [math.inf, math.nan, 1e300])
async def test_a_backoff_out_of_range_falls_back_to_the_default(
    client, make_runner, db, backoff_s: float
) -> None:
    @worker(queue=BAD, max_attempts=3)
    class Fails:
        async def perform(self, job: Job) -> None:
            raise RuntimeError("boom")

        def backoff(self, job: Job) -> float:
            return backoff_s

    async with make_runner(queues={BAD: 2, GOOD: 4}):
        inserted = await client.insert(Fails.new({}))
        await ended(client, inserted.id, JobState.RETRYABLE)
        await healthy_complete(client)
    delay = await db.fetchval(
        "SELECT extract(epoch FROM scheduled_at - now()) FROM jobrunner_jobs WHERE id = $1",
        inserted.id,
    )
    assert 0 < delay < 60  # the default backoff after one attempt: about 17 s


async def test_a_huge_error_is_capped_and_only_the_latest_errors_are_kept(
    client, make_runner, db
) -> None:
    @worker(queue=BAD, max_attempts=50)
    async def huge(job: Job) -> None:
        raise RuntimeError("x" * 5_000_000)

    inserted = await client.insert(huge.new({}))
    old = [{"attempt": i, "at": "", "error": f"old {i}", "traceback": None} for i in range(30)]
    await db.execute(
        "UPDATE jobrunner_jobs SET errors = $2::jsonb WHERE id = $1", inserted.id, json.dumps(old)
    )
    async with make_runner(queues={BAD: 2, GOOD: 4}):
        job = await ended(client, inserted.id, JobState.RETRYABLE)
        await healthy_complete(client)
    assert len(job.errors) == MAX_ERRORS
    assert [e.error for e in job.errors[:-1]] == [f"old {i}" for i in range(11, 30)]
    last = job.errors[-1]
    assert last.error.startswith("RuntimeError: xxx") and "characters cut" in last.error
    assert len(last.error) < MESSAGE_CAP + 100
    assert last.traceback is not None and len(last.traceback) < TRACEBACK_CAP + 100


async def test_a_refused_ack_in_a_batch_is_recorded_alone_and_the_rest_land(
    client, make_runner
) -> None:
    # Bypass every check: the ack statement itself is refused (interval out of range).
    @worker(queue=BAD, max_attempts=3)
    async def forged(job: Job) -> Snooze:
        snooze = Snooze(1)
        object.__setattr__(snooze, "seconds", math.inf)
        return snooze

    async with make_runner(queues={BAD: 2, GOOD: 4}):
        inserted = await client.insert(forged.new({}))
        job = await ended(client, inserted.id, JobState.RETRYABLE)
        await healthy_complete(client, 50)
    assert job.errors[-1].error.startswith("the database refused this attempt's outcome")


async def _claim_all(client: jobrunner.Client, node: str, count: int) -> list[Job]:
    claimed = await _queries.fetch_jobs(client.pool, queue="acks", demand=count, node=node)
    assert len(claimed) == count
    return claimed


@worker(queue="acks")
async def by_hand(job: Job) -> None:
    """Never run: claimed and acked by hand."""


async def test_the_acker_splits_a_refused_batch(client) -> None:
    await client.insert_all([by_hand.new({"i": i}) for i in range(9)])
    claimed = await _claim_all(client, "node-a", 9)
    bad_error = json.dumps({"attempt": 1, "at": "", "error": "\x00", "traceback": None})
    acks = [Ack(j.id, j.attempt, "completed") for j in claimed]
    acks[4] = Ack(claimed[4].id, 1, "discarded", error=bad_error, final=True)
    acker = Acker(client.pool, "node-a")
    await acker.start()
    try:
        for ack in acks:
            acker.push(ack)
        await asyncio.wait_for(acker.wait_idle(), 15)
    finally:
        await acker.stop()
    states = [(await client.get_job(j.id)).state for j in claimed]  # type: ignore[union-attr]
    assert states == [JobState.COMPLETED] * 4 + [JobState.DISCARDED] + [JobState.COMPLETED] * 4
    job = await client.get_job(claimed[4].id)
    assert job is not None
    assert job.errors[-1].error.startswith("the database refused this attempt's outcome")


# Rows the client cannot decode (written by hand, or by an older version).

_SETUPS: dict[str, tuple[str, Any]] = {
    "deep_args": ("args = $2::jsonb", '{"a":' * 5_000 + "1" + "}" * 5_000),
    "errors_not_a_list": ("errors = $2::jsonb", '{"not": "a list"}'),
    "errors_of_another_shape": ("errors = $2::jsonb", "[1, 2]"),
}


@pytest.mark.parametrize("setup", list(_SETUPS))
async def test_a_row_that_cannot_be_decoded_is_set_aside(
    client, make_runner, db: asyncpg.Connection, setup: str
) -> None:
    assignment, value = _SETUPS[setup]
    # In the healthy queue: the row must not hold up the jobs behind it.
    inserted = await client.insert(healthy.new({}, priority=0))
    await db.execute(f"UPDATE jobrunner_jobs SET {assignment} WHERE id = $1", inserted.id, value)
    async with make_runner(queues={GOOD: 2}):
        await healthy_complete(client)
        job = await ended(client, inserted.id, JobState.DISCARDED)
    last = await db.fetchval(
        "SELECT errors -> -1 ->> 'error' FROM jobrunner_jobs WHERE id = $1", inserted.id
    )
    assert last.startswith("the job could not be read, set aside:"), last
    # Never claimed again, and still readable for display.
    assert job.attempt == 1
    listed = await client.list_jobs(limit=100)
    assert inserted.id in [j.id for j in listed]


async def test_attempt_at_the_smallint_maximum_does_not_break_the_claim(
    client, make_runner, db
) -> None:
    inserted = await client.insert(healthy.new({}))
    await db.execute(
        "UPDATE jobrunner_jobs SET attempt = 32767, max_attempts = 32767 WHERE id = $1",
        inserted.id,
    )
    async with make_runner(queues={GOOD: 2}):
        await healthy_complete(client)
        job = await ended(client, inserted.id, JobState.COMPLETED)
    assert job.attempt == 32767


async def test_a_scheduled_time_past_python_dates_does_not_break_the_claim(
    client, make_runner, db
) -> None:
    inserted = await client.insert(healthy.new({}))
    await db.execute(
        "UPDATE jobrunner_jobs SET scheduled_at = '20000-01-01' WHERE id = $1", inserted.id
    )
    job = await client.get_job(inserted.id)
    assert job is not None and job.scheduled_at is not None and job.scheduled_at.year == 9999
    async with make_runner(queues={GOOD: 2}):
        await healthy_complete(client)
        await ended(client, inserted.id, JobState.COMPLETED)
