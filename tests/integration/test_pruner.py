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
