"""Pruner: old completed, cancelled and discarded jobs go, in bounded batches; nothing else does."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

import jobrunner
from jobrunner.db import queries as _queries
from jobrunner.engine.leader import Leader
from jobrunner.plugins.pruner import Pruner
from tests.apps import sample

DAY = "1 day"
STAMP = {"completed": "completed_at", "cancelled": "cancelled_at", "discarded": "discarded_at"}


async def make_job(
    client: jobrunner.Client, db: asyncpg.Connection, state: str, age_days: float
) -> int:
    """A job in `state`, finished (or inserted and scheduled) `age_days` ago."""
    job = await client.insert(sample.noop.new({"state": state, "age": age_days}))
    stamp = STAMP.get(state)
    finished = f", {stamp} = now() - $2 * interval '{DAY}'" if stamp else ""
    await db.execute(
        f"UPDATE jobrunner_jobs SET state = $3::jobrunner_job_state, "
        f"inserted_at = now() - $2 * interval '{DAY}', "
        f"scheduled_at = now() - $2 * interval '{DAY}', "
        f"attempted_at = now() - $2 * interval '{DAY}'{finished} WHERE id = $1",
        job.id,
        age_days,
        state,
    )
    return job.id


async def remaining(db: asyncpg.Connection) -> set[int]:
    return {row["id"] for row in await db.fetch("SELECT id FROM jobrunner_jobs")}


async def test_only_old_finished_jobs_are_pruned(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    finished = ("completed", "cancelled", "discarded")
    old = [await make_job(client, db, state, 8) for state in finished]
    recent = [await make_job(client, db, state, 6) for state in finished]
    unfinished = [
        await make_job(client, db, state, 400)
        for state in ("available", "scheduled", "executing", "retryable")
    ]
    pruner = Pruner(client.pool, interval_s=60)  # default: 7 days for every finished state
    assert await pruner._tick() == {"completed": 1, "cancelled": 1, "discarded": 1}
    assert await remaining(db) == set(recent + unfinished)
    assert not (set(old) & await remaining(db))
    assert await pruner._tick() == {}


async def test_ages_can_differ_per_state(client: jobrunner.Client, db: asyncpg.Connection) -> None:
    completed = await make_job(client, db, "completed", 2)
    discarded_kept = await make_job(client, db, "discarded", 20)
    discarded_old = await make_job(client, db, "discarded", 31)
    cancelled = await make_job(client, db, "cancelled", 0.5)
    pruner = Pruner(
        client.pool, interval_s=60, max_age_s=86_400, max_age_by_state={"discarded": 30 * 86_400}
    )
    assert await pruner._tick() == {"completed": 1, "discarded": 1}
    assert await remaining(db) == {discarded_kept, cancelled}
    assert completed not in await remaining(db) and discarded_old not in await remaining(db)


async def test_pruning_goes_in_bounded_batches(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    ids = [await make_job(client, db, "completed", 10) for _ in range(10)]
    one_batch = await _queries.prune_jobs(
        client.pool, completed_s=86_400, cancelled_s=86_400, discarded_s=86_400, limit=3
    )
    assert one_batch == {"completed": 3}
    assert len(await remaining(db)) == 7
    pruner = Pruner(client.pool, interval_s=60, max_age_s=86_400, batch_size=3)
    assert await pruner._tick() == {"completed": 7}
    assert await remaining(db) == set()
    assert len(ids) == 10


async def test_a_locked_row_is_skipped_not_waited_for(
    client: jobrunner.Client, db: asyncpg.Connection, dsn: str
) -> None:
    locked, free = [await make_job(client, db, "completed", 10) for _ in range(2)]
    holder = await asyncpg.connect(dsn)
    try:
        async with holder.transaction():
            await holder.execute("SELECT 1 FROM jobrunner_jobs WHERE id = $1 FOR UPDATE", locked)
            pruned = await asyncio.wait_for(Pruner(client.pool, interval_s=60)._tick(), 10)
            assert pruned == {"completed": 1}
            assert await remaining(db) == {locked}
    finally:
        await holder.close()
    assert free not in await remaining(db)


async def test_only_the_leader_prunes(client: jobrunner.Client, db: asyncpg.Connection) -> None:
    job_id = await make_job(client, db, "completed", 10)
    leader = Leader(client.pool, node="node-a-1", lease_s=30)
    follower = Leader(client.pool, node="node-b-2", lease_s=30)
    assert await leader._tick() and not await follower._tick()
    assert await Pruner(client.pool, interval_s=60, leader=follower)._tick() == {}
    assert await remaining(db) == {job_id}
    assert await Pruner(client.pool, interval_s=60, leader=leader)._tick() == {"completed": 1}
    assert await remaining(db) == set()


async def finish(db: asyncpg.Connection, ids: list[int], age_days: float) -> None:
    """Complete the jobs `ids`, `age_days` ago."""
    await db.execute(
        f"UPDATE jobrunner_jobs SET state = 'completed', "
        f"completed_at = now() - $2 * interval '{DAY}' WHERE id = ANY($1)",
        ids,
        age_days,
    )


async def rows(db: asyncpg.Connection, table: str) -> set[int]:
    return {row["id"] for row in await db.fetch(f"SELECT id FROM {table}")}


async def backdate(db: asyncpg.Connection, table: str, row_id: int, age_days: float) -> None:
    await db.execute(
        f"UPDATE {table} SET inserted_at = now() - $2 * interval '{DAY}' WHERE id = $1",
        row_id,
        age_days,
    )


async def two_step_workflow(client: jobrunner.Client, name: str) -> list[int]:
    wf = jobrunner.Workflow(name)
    wf.add("a", sample.noop.new({}))
    wf.add("b", sample.noop.new({}))
    run = await client.insert_workflow(wf)
    return [run.id, *(job.id for job in run.jobs.values())]


async def test_a_workflow_row_goes_once_none_of_its_steps_is_left(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    done, a, b = await two_step_workflow(client, "done")
    running, *_ = await two_step_workflow(client, "running")  # old, steps unfinished
    emptied, *steps = await two_step_workflow(client, "emptied")  # new, steps deleted by hand
    await db.execute("DELETE FROM jobrunner_jobs WHERE id = ANY($1)", steps)
    for wf_id in (done, running):
        await backdate(db, "jobrunner_workflows", wf_id, 9)
    await finish(db, [a], 8)
    await finish(db, [b], 1)  # not yet prunable: the workflow stays
    pruner = Pruner(client.pool, interval_s=60)
    assert await pruner._tick() == {"completed": 1}
    assert await rows(db, "jobrunner_workflows") == {done, running, emptied}
    await finish(db, [b], 8)
    assert await pruner._tick() == {"completed": 1, "workflows": 1}
    assert await rows(db, "jobrunner_workflows") == {running, emptied}
    assert await client.get_workflow(done) is None
    await backdate(db, "jobrunner_workflows", emptied, 8)
    assert await pruner._tick() == {"workflows": 1}
    assert await rows(db, "jobrunner_workflows") == {running}
    assert await pruner._tick() == {}


async def test_a_batch_row_goes_once_none_of_its_jobs_is_left(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    done = await client.insert_batch(
        [sample.noop.new({"i": i}) for i in range(3)], on_completed=sample.noop.new({"cb": 1})
    )
    waiting = await client.insert_batch([sample.noop.new({"i": 9})])
    for batch in (done, waiting):
        await backdate(db, "jobrunner_batches", batch.id, 9)
    await finish(db, [job.id for job in done.jobs], 8)
    callback = await db.fetchval("SELECT id FROM jobrunner_jobs WHERE args ? 'cb'")
    assert callback is not None  # a job of no batch: it does not keep the batch's row
    pruner = Pruner(client.pool, interval_s=60)
    assert await pruner._tick() == {"completed": 3, "batches": 1}
    assert await rows(db, "jobrunner_batches") == {waiting.id}
    assert await remaining(db) == {callback, waiting.jobs[0].id}


async def test_workflow_and_batch_rows_go_in_bounded_batches_by_the_leader_only(
    client: jobrunner.Client, db: asyncpg.Connection, dsn: str
) -> None:
    workflows = [(await two_step_workflow(client, f"w{i}"))[0] for i in range(5)]
    batches = [(await client.insert_batch([sample.noop.new({})])).id for _ in range(3)]
    await db.execute("DELETE FROM jobrunner_jobs")
    await db.execute("UPDATE jobrunner_workflows SET inserted_at = now() - interval '8 days'")
    await db.execute("UPDATE jobrunner_batches SET inserted_at = now() - interval '8 days'")
    assert await _queries.prune_workflows(client.pool, min_age_s=86_400, limit=2) == 2
    assert await _queries.prune_batches(client.pool, min_age_s=86_400 * 9, limit=2) == 0

    leader = Leader(client.pool, node="node-a-1", lease_s=30)
    follower = Leader(client.pool, node="node-b-2", lease_s=30)
    assert await leader._tick() and not await follower._tick()
    assert await Pruner(client.pool, interval_s=60, leader=follower)._tick() == {}
    assert len(await rows(db, "jobrunner_workflows")) == 3
    holder = await asyncpg.connect(dsn)
    try:
        async with holder.transaction():  # a row held elsewhere is skipped, not waited for
            await holder.execute(
                "SELECT 1 FROM jobrunner_workflows WHERE id = $1 FOR UPDATE", workflows[-1]
            )
            pruner = Pruner(client.pool, interval_s=60, leader=leader, batch_size=2)
            pruned = await asyncio.wait_for(pruner._tick(), 10)
            assert pruned == {"workflows": 2, "batches": 3}
    finally:
        await holder.close()
    assert await rows(db, "jobrunner_workflows") == {workflows[-1]}
    assert await rows(db, "jobrunner_batches") == set()
    assert len(batches) == 3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"max_age_by_state": {"executing": 10}},
            "prune_max_age_by_state takes completed, cancelled, discarded, got ['executing']",
        ),
        ({"max_age_s": -1}, "prune max age of completed must be seconds >= 0, got -1.0"),
        ({"batch_size": 0}, "prune_batch_size must be an integer >= 1, got 0"),
        ({"interval_s": 0}, "prune_interval_s must be seconds > 0, got 0"),
    ],
)
def test_bad_settings_are_refused(options: dict[str, object], message: str) -> None:
    options.setdefault("interval_s", 60)
    with pytest.raises(jobrunner.ConfigError) as raised:
        Pruner(None, **options)  # type: ignore[arg-type]
    assert str(raised.value) == message
