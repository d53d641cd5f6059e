"""What the daemon writes back for each way a job can end, against the real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

import jobrunner
from jobrunner import Cancel, Discard, Job, JobState, NewJob, Snooze, worker
from jobrunner.db import queries as _queries
from jobrunner.db.queries import Ack
from jobrunner.engine.acker import Acker
from tests.helpers import eventually

QUEUE = "outcomes"


async def ended(
    client: jobrunner.Client, job_id: int, state: JobState, timeout_s: float = 15
) -> Job:
    """The job once it is in `state`."""

    async def check() -> Job:
        job = await client.get_job(job_id)
        assert job is not None and job.state is state, job
        return job

    return await eventually(check, timeout_s)


async def db_now(db: asyncpg.Connection) -> datetime:
    return await db.fetchval("SELECT clock_timestamp()")


async def test_returning_none_completes(client, make_runner) -> None:
    @worker(queue=QUEUE)
    async def ok(job: Job) -> None:
        return None

    async with make_runner(queues={QUEUE: 2}):
        inserted = await client.insert(ok.new({"n": 1}))
        job = await ended(client, inserted.id, JobState.COMPLETED)
    assert job.attempt == 1 and job.errors == ()
    assert job.completed_at is not None and job.attempted_at is not None
    assert job.completed_at >= job.attempted_at
    assert job.discarded_at is None and job.cancelled_at is None


async def test_raising_retries_after_the_default_backoff_with_the_error(
    client, make_runner, db
) -> None:
    @worker(queue=QUEUE, max_attempts=3)
    async def broken(job: Job) -> None:
        raise RuntimeError("boom")

    async with make_runner(queues={QUEUE: 2}):
        before = await db_now(db)
        inserted = await client.insert(broken.new({}))
        job = await ended(client, inserted.id, JobState.RETRYABLE)
        after = await db_now(db)
    assert job.attempt == 1 and job.completed_at is None and job.discarded_at is None
    # Oban's backoff at attempt 1: 15 + 2**1 = 17 s, plus up to 10% jitter.
    assert job.scheduled_at is not None
    assert before + timedelta(seconds=17) <= job.scheduled_at <= after + timedelta(seconds=18.7)
    [error] = job.errors
    assert error.attempt == 1 and error.error == "RuntimeError: boom"
    assert before <= datetime.fromisoformat(error.at) <= after
    assert error.traceback is not None
    assert "in broken" in error.traceback and "RuntimeError: boom" in error.traceback


async def test_raising_on_the_last_attempt_discards(client, make_runner) -> None:
    @worker(queue=QUEUE, max_attempts=1)
    async def once(job: Job) -> None:
        raise ValueError("no more")

    async with make_runner(queues={QUEUE: 2}):
        inserted = await client.insert(once.new({}))
        job = await ended(client, inserted.id, JobState.DISCARDED)
    assert job.attempt == 1 and job.discarded_at is not None and job.completed_at is None
    assert [e.error for e in job.errors] == ["ValueError: no more"]


async def test_snooze_reschedules_without_using_an_attempt(client, make_runner, db) -> None:
    @worker(queue=QUEUE)
    async def later(job: Job) -> Snooze:
        return Snooze(30)

    async with make_runner(queues={QUEUE: 2}):
        before = await db_now(db)
        inserted = await client.insert(later.new({}))
        job = await ended(client, inserted.id, JobState.SCHEDULED)
        after = await db_now(db)
    assert job.attempt == 0 and job.errors == ()
    assert job.scheduled_at is not None
    assert before + timedelta(seconds=30) <= job.scheduled_at <= after + timedelta(seconds=30)


async def test_cancel_records_the_reason(client, make_runner) -> None:
    @worker(queue=QUEUE)
    async def unwanted(job: Job) -> Cancel:
        return Cancel("user deleted")

    async with make_runner(queues={QUEUE: 2}):
        inserted = await client.insert(unwanted.new({}))
        job = await ended(client, inserted.id, JobState.CANCELLED)
    assert job.cancelled_at is not None and job.completed_at is None and job.attempt == 1
    [error] = job.errors
    assert error.attempt == 1 and error.error == "user deleted" and error.traceback is None


async def test_discard_records_the_reason(client, make_runner) -> None:
    @worker(queue=QUEUE)
    async def hopeless(job: Job) -> Discard:
        return Discard("bad input")

    async with make_runner(queues={QUEUE: 2}):
        inserted = await client.insert(hopeless.new({}))
        job = await ended(client, inserted.id, JobState.DISCARDED)
    assert job.discarded_at is not None and job.attempt == 1
    assert [e.error for e in job.errors] == ["bad input"]


async def test_timeout_stops_the_job_and_counts_as_an_error(client, make_runner) -> None:
    stopped: asyncio.Queue[int] = asyncio.Queue()

    @worker(queue=QUEUE, timeout=0.2)
    async def slow(job: Job) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.put_nowait(job.id)
            raise

    async with make_runner(queues={QUEUE: 2}):
        inserted = await client.insert(slow.new({}))
        assert await asyncio.wait_for(stopped.get(), 15) == inserted.id
        job = await ended(client, inserted.id, JobState.RETRYABLE)
    assert job.attempt == 1
    assert [e.error for e in job.errors] == ["JobTimeout: job timed out after 0.2s"]


async def test_class_worker_timeout_and_backoff(client, make_runner, db) -> None:
    @worker(queue=QUEUE)
    class Slow:
        async def perform(self, job: Job) -> None:
            await asyncio.sleep(60)

        def timeout(self, job: Job) -> float:
            return 0.2

        def backoff(self, job: Job) -> float:
            return 100 + job.attempt

    async with make_runner(queues={QUEUE: 2}):
        before = await db_now(db)
        inserted = await client.insert(Slow.new({}))  # type: ignore[attr-defined]
        job = await ended(client, inserted.id, JobState.RETRYABLE)
        after = await db_now(db)
    assert [e.error for e in job.errors] == ["JobTimeout: job timed out after 0.2s"]
    assert job.scheduled_at is not None
    assert before + timedelta(seconds=101) <= job.scheduled_at <= after + timedelta(seconds=101)


async def test_class_worker_error_uses_its_backoff(client, make_runner, db) -> None:
    @worker(queue=QUEUE)
    class Flaky:
        async def perform(self, job: Job) -> None:
            raise ConnectionError("remote down")

        def backoff(self, job: Job) -> float:
            return 2**job.attempt

    async with make_runner(queues={QUEUE: 2}):
        before = await db_now(db)
        inserted = await client.insert(Flaky.new({}))  # type: ignore[attr-defined]
        job = await ended(client, inserted.id, JobState.RETRYABLE)
        after = await db_now(db)
    assert [e.error for e in job.errors] == ["ConnectionError: remote down"]
    assert before + timedelta(seconds=2) <= job.scheduled_at <= after + timedelta(seconds=2)


async def test_unknown_worker_is_an_error_on_the_job_not_a_crash(client, make_runner) -> None:
    @worker(queue=QUEUE)
    async def fine(job: Job) -> None:
        return None

    async with make_runner(queues={QUEUE: 2}) as runner:
        missing = await client.insert(NewJob(worker="not.deployed.yet", args={}, queue=QUEUE))
        job = await ended(client, missing.id, JobState.RETRYABLE)
        assert [e.error for e in job.errors] == [
            "UnknownWorker: unknown worker 'not.deployed.yet'; is its module in --app?"
        ]
        later = await client.insert(fine.new({}))
        await ended(client, later.id, JobState.COMPLETED)
        assert not runner.failed.is_set()


async def test_subscribers_receive_start_stop_and_exception(client, make_runner) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    @worker(queue=QUEUE, max_attempts=5)
    async def maybe(job: Job) -> None:
        if job.args["fail"]:
            raise KeyError("missing")

    unsubscribe = jobrunner.subscribe(lambda event, fields: seen.append((event, fields)))
    try:
        async with make_runner(queues={QUEUE: 1}):
            good = await client.insert(maybe.new({"fail": False}))
            await ended(client, good.id, JobState.COMPLETED)
            bad = await client.insert(maybe.new({"fail": True}))
            await ended(client, bad.id, JobState.RETRYABLE)
    finally:
        unsubscribe()
    mine = [(e, f) for e, f in seen if f["job_id"] in (good.id, bad.id)]
    assert [(e, f["job_id"]) for e, f in mine] == [
        ("job.start", good.id),
        ("job.stop", good.id),
        ("job.start", bad.id),
        ("job.exception", bad.id),
    ]
    for _, fields in mine:
        assert fields["worker"] == maybe.name and fields["queue"] == QUEUE
        assert fields["attempt"] == 1 and fields["queue_time_s"] >= 0
    stop, exception = mine[1][1], mine[3][1]
    assert stop["outcome"] == "completed" and stop["duration_s"] >= 0
    assert exception["outcome"] == "failure" and exception["error"] == "KeyError: 'missing'"
    count = len(seen)
    async with make_runner(queues={QUEUE: 1}):
        after = await client.insert(maybe.new({"fail": False}))
        await ended(client, after.id, JobState.COMPLETED)
    assert len(seen) == count  # unsubscribed


async def test_subscribe_rejects_unknown_events() -> None:
    with pytest.raises(ValueError, match=r"unknown event 'job\.done'"):
        jobrunner.subscribe(lambda event, fields: None, ["job.done"])


async def test_cancelling_an_executing_job_stops_its_task(client, make_runner) -> None:
    started: asyncio.Queue[int] = asyncio.Queue()
    stopped: asyncio.Queue[int] = asyncio.Queue()

    @worker(queue=QUEUE)
    async def long(job: Job) -> None:
        started.put_nowait(job.id)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.put_nowait(job.id)
            raise

    async with make_runner(queues={QUEUE: 2}) as runner:
        inserted = await client.insert(long.new({}))
        assert await asyncio.wait_for(started.get(), 15) == inserted.id
        await client.cancel_job(inserted.id)
        assert await asyncio.wait_for(stopped.get(), 15) == inserted.id
        await eventually(lambda: _no_running(runner))
        await runner.acker.wait_idle()
        job = await ended(client, inserted.id, JobState.CANCELLED)
    assert job.cancelled_at is not None and job.completed_at is None and job.attempt == 1
    assert job.errors == ()


async def test_a_job_cancelled_without_notification_is_stopped_by_the_heartbeat(
    client, make_runner, db
) -> None:
    started: asyncio.Queue[int] = asyncio.Queue()
    stopped: asyncio.Queue[int] = asyncio.Queue()

    @worker(queue=QUEUE)
    async def long(job: Job) -> None:
        started.put_nowait(job.id)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.put_nowait(job.id)
            raise

    async with make_runner(queues={QUEUE: 2}) as runner:
        inserted = await client.insert(long.new({}))
        assert await asyncio.wait_for(started.get(), 15) == inserted.id
        # As if the NOTIFY was lost: the row changes, nobody tells the node.
        await db.execute(
            "UPDATE jobrunner_jobs SET state = 'cancelled', cancelled_at = now() WHERE id = $1",
            inserted.id,
        )
        assert await asyncio.wait_for(stopped.get(), 15) == inserted.id
        await eventually(lambda: _no_running(runner))
        await runner.acker.wait_idle()
    job = await ended(client, inserted.id, JobState.CANCELLED)
    assert job.completed_at is None and job.errors == ()


async def test_a_job_that_turns_its_interruption_into_an_error_still_goes_back(
    client, make_runner
) -> None:
    began: asyncio.Queue[int] = asyncio.Queue()

    @worker(queue=QUEUE)
    async def stubborn(job: Job) -> None:
        began.put_nowait(job.id)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise RuntimeError("stopped, but says it failed") from None

    async with make_runner(queues={QUEUE: 1}) as runner:
        inserted = await client.insert(stubborn.new({}))
        assert await asyncio.wait_for(began.get(), 15) == inserted.id
        await asyncio.wait_for(runner.stop(grace=0.1), 20)
    job = await ended(client, inserted.id, JobState.AVAILABLE, timeout_s=0)
    assert job.attempt == 0 and job.errors == ()


async def _no_running(runner: jobrunner.Runner) -> bool:
    return all(p.running == 0 for p in runner.producers.values())


# --- acks ---------------------------------------------------------------------------------


async def _claim(client: jobrunner.Client, node: str) -> Job:
    [job] = await _queries.fetch_jobs(client.pool, queue="acks", demand=1, node=node)
    return job


async def _ack(client: jobrunner.Client, node: str, ack: Ack) -> Acker:
    acker = Acker(client.pool, node)
    await acker.start()
    try:
        acker.push(ack)
        await asyncio.wait_for(acker.wait_idle(), 15)
    finally:
        await acker.stop()
    return acker


@worker(queue="acks")
async def acked(job: Job) -> None:
    """Never run: these tests claim and ack by hand."""


async def test_an_ack_for_a_job_rescued_and_reclaimed_elsewhere_changes_nothing(client, db) -> None:
    inserted = await client.insert(acked.new({}))
    first = await _claim(client, "node-a")
    assert first.attempt == 1 and first.attempted_by == ("node-a",)
    await db.execute("UPDATE jobrunner_jobs SET state = 'available' WHERE id = $1", inserted.id)
    second = await _claim(client, "node-b")
    assert second.attempt == 2
    acker = await _ack(client, "node-a", Ack(inserted.id, 1, "completed"))
    assert (acker.written, acker.stale) == (0, 1)
    job = await client.get_job(inserted.id)
    assert job is not None and job.state is JobState.EXECUTING
    assert job.attempt == 2 and job.attempted_by == ("node-b",) and job.completed_at is None
    owner = await _ack(client, "node-b", Ack(inserted.id, 2, "completed"))
    assert (owner.written, owner.stale) == (1, 0)
    assert (await ended(client, inserted.id, JobState.COMPLETED)).completed_at is not None


async def test_an_ack_for_an_older_attempt_on_the_same_node_changes_nothing(client, db) -> None:
    inserted = await client.insert(acked.new({}))
    await _claim(client, "node-a")
    await db.execute("UPDATE jobrunner_jobs SET state = 'available' WHERE id = $1", inserted.id)
    await _claim(client, "node-a")
    acker = await _ack(client, "node-a", Ack(inserted.id, 1, "discarded", error='{"error": "x"}'))
    assert acker.stale == 1
    job = await client.get_job(inserted.id)
    assert job is not None and job.state is JobState.EXECUTING and job.attempt == 2
    assert job.errors == () and job.discarded_at is None


async def test_an_ack_for_a_job_cancelled_meanwhile_changes_nothing(client) -> None:
    inserted = await client.insert(acked.new({}))
    await _claim(client, "node-a")
    await client.cancel_job(inserted.id)
    acker = await _ack(client, "node-a", Ack(inserted.id, 1, "completed"))
    assert (acker.written, acker.stale) == (0, 1)
    job = await ended(client, inserted.id, JobState.CANCELLED)
    assert job.completed_at is None and job.attempt == 1


async def test_acks_pending_together_are_written_in_one_statement(client) -> None:
    inserted = await client.insert_all([acked.new({"i": i}) for i in range(30)])
    claimed = await _queries.fetch_jobs(client.pool, queue="acks", demand=30, node="node-a")
    assert len(claimed) == 30
    acker = Acker(client.pool, "node-a")
    await acker.start()
    try:
        for job in claimed:
            acker.push(Ack(job.id, job.attempt, "completed"))
        await asyncio.wait_for(acker.wait_idle(), 15)
    finally:
        await acker.stop()
    assert (acker.flushes, acker.written, acker.stale) == (1, 30, 0)
    states = {(await client.get_job(j.id)).state for j in inserted}  # type: ignore[union-attr]
    assert states == {JobState.COMPLETED}
