"""Recorded results: what a worker returns with Record(value) is stored with its job."""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import pytest

import jobrunner
from jobrunner import Job, JobState, Record, worker
from jobrunner.core.job import MAX_RESULT_BYTES, encode_result
from tests.integration.test_daemon_outcomes import ended

QUEUE = "recorded"


@pytest.fixture
def sync_client(dsn: str, db: asyncpg.Connection) -> Iterator[jobrunner.SyncClient]:
    with jobrunner.connect_sync(dsn) as client:
        yield client


async def test_a_recorded_value_is_read_back_by_both_clients(
    client: jobrunner.Client, make_runner, sync_client: jobrunner.SyncClient
) -> None:
    @worker(queue=QUEUE)
    async def count_rows(job: Job) -> Record:
        return Record({"rows": job.args["n"] * 2, "tables": ["a", "é"], "ok": True})

    @worker(queue=QUEUE)
    def plain_count(job: Job) -> Record:  # a sync worker records the same way
        return Record([1, 2.5, None, "x"])

    async with make_runner(queues={QUEUE: 2}):
        first = await client.insert(count_rows.new({"n": 21}))
        second = await client.insert(plain_count.new({}))
        done = await ended(client, first.id, JobState.COMPLETED)
        await ended(client, second.id, JobState.COMPLETED)
    assert done.result == {"rows": 42, "tables": ["a", "é"], "ok": True}
    assert done.errors == ()
    synced = sync_client.get_job(second.id)
    assert synced is not None and synced.result == [1, 2.5, None, "x"]


async def test_a_job_that_records_nothing_has_no_result(client, make_runner) -> None:
    @worker(queue=QUEUE)
    async def quiet(job: Job) -> None:
        return None

    async with make_runner(queues={QUEUE: 1}):
        job = await client.insert(quiet.new({}))
        done = await ended(client, job.id, JobState.COMPLETED)
    assert done.result is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("x" * (MAX_RESULT_BYTES + 1), f"a recorded result is at most {MAX_RESULT_BYTES} bytes"),
        ({"at": object()}, "a recorded result must be JSON"),
        ({"ratio": float("nan")}, "a recorded result must be JSON"),
        ({"text": "a\x00b"}, "a recorded result cannot hold a NUL character"),
        ({"text": "a\ud800b"}, "a recorded result cannot hold a lone surrogate"),
        ({"big": float("inf")}, "a recorded result must be JSON"),
    ],
)
async def test_a_result_that_cannot_be_stored_fails_the_attempt(
    client, make_runner, value: object, reason: str
) -> None:
    @worker(queue=QUEUE, max_attempts=1)
    async def too_much(job: Job) -> Record:
        return Record(value)

    async with make_runner(queues={QUEUE: 1}):
        job = await client.insert(too_much.new({}))
        done = await ended(client, job.id, JobState.DISCARDED)
    assert done.result is None
    [error] = done.errors
    assert error.error.startswith("ValueError: " + reason), error.error


def test_the_size_limit_counts_utf8_bytes_of_the_json_text() -> None:
    fits = "é" * ((MAX_RESULT_BYTES - 2) // 2)  # two bytes each, plus the quotes
    assert len(encode_result(fits).encode()) <= MAX_RESULT_BYTES
    with pytest.raises(ValueError, match="bytes of JSON"):
        encode_result(fits + "é")
    # An escaped backslash followed by "u0000" is no NUL.
    assert encode_result("\\u0000") == '"\\\\u0000"'


async def test_job_json_carries_the_result(client, make_runner) -> None:
    from jobrunner.ops.status import job_json

    @worker(queue=QUEUE)
    async def summary(job: Job) -> Record:
        return Record({"total": 3})

    async with make_runner(queues={QUEUE: 1}):
        job = await client.insert(summary.new({}))
        done = await ended(client, job.id, JobState.COMPLETED)
    assert job_json(done)["result"] == {"total": 3}
