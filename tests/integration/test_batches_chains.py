"""Batches (callbacks inserted once when a group of jobs ends) and chains (jobs of one key
run one at a time, in insertion order), on the real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest

import jobrunner
from jobrunner import Discard, InvalidJob, Job, JobState, worker
from tests.helpers import eventually

QUEUE = "batch"
SPANS: list[tuple[str, int, str]] = []  # (chain, n, "start" | "end") in the order they happened


@worker(queue=QUEUE, name="tests.batch.item")
async def item(job: Job) -> Discard | None:
    return Discard("bad item") if job.args.get("bad") else None


@worker(queue=QUEUE, name="tests.batch.done")
async def done(job: Job) -> None:
    return None


@worker(queue="batch-other", name="tests.batch.elsewhere")
async def elsewhere(job: Job) -> None:
    return None


@worker(queue=QUEUE, name="tests.chain.ledger")
async def ledger(job: Job) -> None:
    SPANS.append((job.args["account"], job.args["n"], "start"))
    await asyncio.sleep(0.005 * (job.args["n"] % 3))  # uneven work: overtaking would show
    SPANS.append((job.args["account"], job.args["n"], "end"))


async def callbacks(db: asyncpg.Connection) -> list[tuple[str, int]]:
    rows = await db.fetch(
        "SELECT meta->>'batch_callback' AS cond, (meta->>'batch_id')::int AS batch "
        "FROM jobrunner_jobs WHERE worker = 'tests.batch.done' ORDER BY id"
    )
    return [(r["cond"], r["batch"]) for r in rows]


async def test_on_completed_and_on_exhausted_are_inserted_once_when_all_complete(
    client: jobrunner.Client, make_runner, db: asyncpg.Connection
) -> None:
    batch = await client.insert_batch(
        [item.new({"i": i}) for i in range(20)],
        on_completed=done.new({"album": 7}),
        on_discarded=done.new({}),
        on_exhausted=done.new({}),
    )
    assert len(batch.jobs) == 20 and all(j.state is JobState.AVAILABLE for j in batch.jobs)
    async with make_runner(queues={QUEUE: 5}):

        async def check() -> list[tuple[str, int]]:
            found = await callbacks(db)
            assert len(found) == 2, found
            return found

        found = await eventually(check, 15)
    assert sorted(found) == [("completed", batch.id), ("exhausted", batch.id)]
    cb = await db.fetchrow("SELECT args::text AS args FROM jobrunner_jobs WHERE args ? 'album'")
    assert cb is not None and cb["args"] == '{"album": 7}'


async def test_on_discarded_fires_once_the_batch_ends_with_a_discarded_job(
    client: jobrunner.Client, make_runner, db: asyncpg.Connection
) -> None:
    batch = await client.insert_batch(
        [item.new({"i": 0, "bad": True}), item.new({"i": 1})],
        on_completed=done.new({}),
        on_discarded=done.new({}),
    )
    async with make_runner(queues={QUEUE: 2}):
        await eventually(lambda: _count(db, "tests.batch.done", 1), 15)
    assert await callbacks(db) == [("discarded", batch.id)]
    # A retried job counts as unfinished again: completing now fires on_completed, once.
    await client.retry_job(batch.jobs[0].id)
    await db.execute(
        "UPDATE jobrunner_jobs SET args = '{\"i\": 0}' WHERE id = $1", batch.jobs[0].id
    )
    async with make_runner(queues={QUEUE: 2}):
        await eventually(lambda: _count(db, "tests.batch.done", 2), 15)
    assert await callbacks(db) == [("discarded", batch.id), ("completed", batch.id)]


async def _count(db: asyncpg.Connection, worker_name: str, expected: int) -> bool:
    n = await db.fetchval("SELECT count(*) FROM jobrunner_jobs WHERE worker = $1", worker_name)
    assert n == expected, n
    return True


async def test_batch_refusals(client: jobrunner.Client) -> None:
    with pytest.raises(InvalidJob, match="a batch needs at least one job"):
        await client.insert_batch([], on_completed=done.new({}))
    with pytest.raises(InvalidJob, match=r"on_completed takes a job built with worker\.new"):
        await client.insert_batch([item.new({})], on_completed="tests.batch.done")  # type: ignore[arg-type]
    with pytest.raises(InvalidJob, match="on_exhausted runs when the batch ends"):
        await client.insert_batch([item.new({})], on_exhausted=done.new({}, schedule_in=5))


async def test_a_chain_runs_one_job_at_a_time_in_insertion_order(
    client: jobrunner.Client, make_runner
) -> None:
    SPANS.clear()
    # Interleaved inserts into two chains, singly and in bulk, before and while running.
    await client.insert_all(
        [ledger.new({"account": "a", "n": n}, chain="acct-a") for n in range(5)]
    )
    for n in range(5):
        await client.insert(ledger.new({"account": "b", "n": n}, chain="acct-b"))
    async with make_runner(queues={QUEUE: 8}):
        for n in range(5, 10):
            await client.insert(ledger.new({"account": "a", "n": n}, chain="acct-a"))

        async def all_done() -> bool:
            assert len([s for s in SPANS if s[2] == "end"]) == 15
            return True

        await eventually(all_done, 20)
    for account, count in (("a", 10), ("b", 5)):
        mine = [(n, what) for acct, n, what in SPANS if acct == account]
        expected = [(n, what) for n in range(count) for what in ("start", "end")]
        assert mine == expected, account  # never two at once, never out of order


async def test_a_failed_chain_job_does_not_stop_the_chain(
    client: jobrunner.Client, make_runner
) -> None:
    first = await client.insert(item.new({"bad": True}, chain="c"))
    second = await client.insert(item.new({}, chain="c"))
    assert second.state is JobState.SCHEDULED
    async with make_runner(queues={QUEUE: 2}):

        async def check() -> bool:
            job = await client.get_job(second.id)
            assert job is not None and job.state is JobState.COMPLETED
            return True

        await eventually(check, 15)
    again = await client.get_job(first.id)
    assert again is not None and again.state is JobState.DISCARDED


@pytest.fixture
def sync_client(dsn: str, db: asyncpg.Connection) -> Iterator[jobrunner.SyncClient]:
    with jobrunner.connect_sync(dsn) as client:
        yield client


async def test_the_sync_client_inserts_batches_and_chains(
    sync_client: jobrunner.SyncClient, db: asyncpg.Connection
) -> None:
    batch = sync_client.insert_batch([item.new({"i": 1})], on_completed=done.new({}))
    assert batch.id > 0 and batch.jobs[0].state is JobState.AVAILABLE
    jobs = sync_client.insert_all(
        [item.new({"i": 2}, chain="s"), item.new({"i": 3}), item.new({"i": 4}, chain="s")]
    )
    assert [j.state for j in jobs] == [JobState.AVAILABLE, JobState.AVAILABLE, JobState.SCHEDULED]
    deps = await db.fetch("SELECT dep_id, job_id FROM jobrunner_job_deps")
    assert [(r["dep_id"], r["job_id"]) for r in deps] == [(jobs[0].id, jobs[2].id)]


async def test_inline_testing_mode_runs_a_batch_s_callbacks_when_it_ends(dsn: str, db) -> None:
    async with jobrunner.connect(dsn, testing="inline") as inline:
        batch = await inline.insert_batch(
            [item.new({"i": i}) for i in range(3)],
            on_completed=done.new({"album": 1}),
            on_discarded=done.new({}),
            on_exhausted=elsewhere.new({}),
        )
        failed = await inline.insert_batch(
            [item.new({"i": 0, "bad": True}), item.new({"i": 1})],
            on_completed=done.new({}),
            on_discarded=done.new({}),
        )
    rows = await db.fetch(
        "SELECT meta->>'batch_callback' AS cond, (meta->>'batch_id')::int AS batch, "
        "state::text AS state FROM jobrunner_jobs WHERE meta ? 'batch_callback' ORDER BY id"
    )
    assert [(r["batch"], r["cond"], r["state"]) for r in rows] == [
        (batch.id, "completed", "completed"),
        (batch.id, "exhausted", "completed"),  # in another queue: inline runs it all the same
        (failed.id, "discarded", "completed"),
    ]


async def test_drain_queue_runs_a_batch_s_callbacks_in_its_queue_and_enqueues_the_others(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    from jobrunner.testing import assert_enqueued, drain_queue

    batch = await client.insert_batch(
        [item.new({"i": i}) for i in range(5)],
        on_completed=done.new({"album": 2}),
        on_exhausted=elsewhere.new({}),
    )
    result = await drain_queue(client, QUEUE)
    assert result.as_dict() == {
        "completed": 6,  # the five jobs, then on_completed
        "failure": 0,
        "snoozed": 0,
        "cancelled": 0,
        "discarded": 0,
    }
    assert await callbacks(db) == [("completed", batch.id)]
    ran = await db.fetchval("SELECT state::text FROM jobrunner_jobs WHERE args ? 'album'")
    assert ran == "completed"
    await assert_enqueued(
        client, worker="tests.batch.elsewhere", queue="batch-other", state="available"
    )
    assert (await drain_queue(client, "batch-other")).completed == 1


async def test_inline_testing_mode_runs_a_chain_through_in_order(dsn: str, db) -> None:
    SPANS.clear()
    async with jobrunner.connect(dsn, testing="inline") as inline:
        jobs = await inline.insert_all(
            [ledger.new({"account": "i", "n": n}, chain="inline") for n in range(3)]
        )
    assert [j.state for j in jobs] == [JobState.COMPLETED] * 3
    assert [n for _, n, what in SPANS if what == "start"] == [0, 1, 2]


async def test_a_chained_insert_racing_the_chain_s_last_job_finishing_never_strands_it(
    client: jobrunner.Client, dsn: str
) -> None:
    from tests.integration.test_workflows import _blocked

    for outcome_first in (False, True):
        prev = await client.insert(item.new({}, chain=f"race-{outcome_first}"))
        adder = await asyncpg.connect(dsn)
        finisher = await asyncpg.connect(dsn)
        complete = "UPDATE jobrunner_jobs SET state = 'completed' WHERE id = $1"
        try:
            await finisher.execute(
                "UPDATE jobrunner_jobs SET state = 'executing' WHERE id = $1", prev.id
            )
            following = item.new({}, chain=f"race-{outcome_first}")
            if outcome_first:
                tx = finisher.transaction()
                await tx.start()
                await finisher.execute(complete, prev.id)
                adding = asyncio.ensure_future(client.insert(following, conn=adder))
                await _blocked(client, "jobrunner_insert_chain")
                await tx.commit()
                added = await adding
                assert added.state is JobState.AVAILABLE
            else:
                tx = adder.transaction()
                await tx.start()
                added = await client.insert(following, conn=adder)
                assert added.state is JobState.SCHEDULED
                finishing = asyncio.ensure_future(finisher.execute(complete, prev.id))
                await _blocked(client, "UPDATE jobrunner_jobs SET state = 'completed'")
                await tx.commit()
                await finishing
            job = await client.get_job(added.id)
            assert job is not None and job.state is JobState.AVAILABLE, outcome_first
        finally:
            await adder.close()
            await finisher.close()
