"""Unique jobs as in Oban (period, fields, keys, states), enforced by the database: for single
inserts, within and across insert_all batches, and under concurrency."""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import asyncpg
import pytest

import jobrunner
from jobrunner import Job, JobState, Unique, worker
from tests.helpers import eventually


@worker(name="unique_tests.sync", unique=Unique(period=300))
async def sync(job: Job) -> None: ...


@worker(name="unique_tests.by_user", queue="users", unique=Unique(period=None, keys=["user_id"]))
async def by_user(job: Job) -> None: ...


@worker(name="unique_tests.plain")
async def plain(job: Job) -> None: ...


async def count(db: asyncpg.Connection) -> int:
    n: int = await db.fetchval("SELECT count(*) FROM jobrunner_jobs")
    return n


async def set_state(db: asyncpg.Connection, job_id: int, state: str) -> None:
    await db.execute("UPDATE jobrunner_jobs SET state = $2 WHERE id = $1", job_id, state)


@pytest.fixture
async def pool(dsn: str, db: asyncpg.Connection) -> AsyncIterator[asyncpg.Pool]:
    """Twenty connections of their own, to insert from at the same moment."""
    created = await asyncpg.create_pool(dsn, min_size=20, max_size=20)
    assert created is not None
    try:
        yield created
    finally:
        await created.close()


async def test_duplicate_returns_the_existing_job_marked_conflict(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    first = await client.insert(sync.new({"id": 1}))
    second = await client.insert(sync.new({"id": 1}, priority=5, meta={"other": True}))
    assert first.conflict is False and first.unique_key is not None
    assert second.conflict is True
    assert second == replace(first, conflict=True)  # the existing job, not the new one
    assert await count(db) == 1
    third = await client.insert(sync.new({"id": 2}))
    assert third.conflict is False and third.id != first.id
    assert await count(db) == 2


async def test_fields_decide_what_a_duplicate_is(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    @worker(name="unique_tests.other", unique=Unique(period=300))
    async def other(job: Job) -> None: ...

    base = await client.insert(sync.new({"id": 1}))
    assert not (await client.insert(sync.new({"id": 1}, queue="elsewhere"))).conflict
    assert not (await client.insert(other.new({"id": 1}))).conflict
    assert not (await client.insert(sync.new({"id": 1, "x": 0}))).conflict
    assert (await client.insert(sync.new({"id": 1}))).id == base.id
    assert await count(db) == 4

    args_only = Unique(period=300, fields=["args"])
    a = await client.insert(plain.new({"k": 1}, queue="q1", unique=args_only))
    b = await client.insert(other.new({"k": 1}, queue="q2", unique=args_only))
    assert b.conflict and b.id == a.id

    with_meta = Unique(period=300, fields=["worker", "meta"])
    m1 = await client.insert(plain.new({"a": 1}, meta={"tenant": "x"}, unique=with_meta))
    m2 = await client.insert(plain.new({"a": 2}, meta={"tenant": "x"}, unique=with_meta))
    m3 = await client.insert(plain.new({"a": 1}, meta={"tenant": "y"}, unique=with_meta))
    assert m2.conflict and m2.id == m1.id and not m3.conflict


async def test_keys_compare_a_subset_of_args(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    first = await client.insert(by_user.new({"user_id": 1, "reason": "a"}))
    same_user = await client.insert(by_user.new({"user_id": 1, "reason": "b"}))
    other_user = await client.insert(by_user.new({"user_id": 2, "reason": "a"}))
    missing_key = await client.insert(by_user.new({"reason": "a"}))
    missing_again = await client.insert(by_user.new({"reason": "z"}))
    assert same_user.conflict and same_user.id == first.id and same_user.args["reason"] == "a"
    assert not other_user.conflict and not missing_key.conflict
    assert missing_again.conflict and missing_again.id == missing_key.id
    assert await count(db) == 3


async def test_keys_without_args_in_fields_still_compare_those_args(
    client: jobrunner.Client,
) -> None:
    unique = Unique(period=60, fields=["queue", "worker"], keys=["user_id"])
    first = await client.insert(plain.new({"user_id": 1, "n": 1}, unique=unique))
    again = await client.insert(plain.new({"user_id": 1, "n": 2}, unique=unique))
    other = await client.insert(plain.new({"user_id": 2, "n": 1}, unique=unique))
    assert again.conflict and again.id == first.id and not other.conflict


async def test_unique_can_be_turned_off_per_job(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    await client.insert(sync.new({"id": 1}))
    loose = await client.insert(sync.new({"id": 1}, unique=False))
    assert not loose.conflict and loose.unique_key is None
    assert await count(db) == 2


async def test_period_is_a_sliding_window(client: jobrunner.Client, db: asyncpg.Connection) -> None:
    first = await client.insert(sync.new({"id": 1}))
    await db.execute(
        "UPDATE jobrunner_jobs SET inserted_at = now() - interval '299 seconds' WHERE id = $1",
        first.id,
    )
    assert (await client.insert(sync.new({"id": 1}))).id == first.id  # still inside 300 s
    await db.execute(
        "UPDATE jobrunner_jobs SET inserted_at = now() - interval '301 seconds' WHERE id = $1",
        first.id,
    )
    fresh = await client.insert(sync.new({"id": 1}))
    assert not fresh.conflict and fresh.id != first.id
    old = await client.get_job(first.id)
    assert old is not None and old.state is JobState.AVAILABLE and old.unique_key is None
    assert (await client.insert(sync.new({"id": 1}))).id == fresh.id


async def test_short_period_expires_in_real_time(client: jobrunner.Client) -> None:
    unique = Unique(period=1.5)
    first = await client.insert(plain.new({"tick": 1}, unique=unique))
    assert (await client.insert(plain.new({"tick": 1}, unique=unique))).id == first.id

    async def inserted_anew() -> Job | None:
        job = await client.insert(plain.new({"tick": 1}, unique=unique))
        return None if job.conflict else job

    fresh = await eventually(inserted_anew, timeout_s=20, interval_s=0.1)
    assert fresh.inserted_at is not None and first.inserted_at is not None
    assert fresh.inserted_at - first.inserted_at >= timedelta(seconds=1.5)


async def test_no_period_means_for_ever(client: jobrunner.Client, db: asyncpg.Connection) -> None:
    first = await client.insert(by_user.new({"user_id": 9}))
    await db.execute("UPDATE jobrunner_jobs SET inserted_at = now() - interval '10 years'")
    assert (await client.insert(by_user.new({"user_id": 9}))).id == first.id


@pytest.mark.parametrize(
    ("state", "conflicts"),
    [
        ("available", True),
        ("scheduled", True),
        ("executing", True),
        ("retryable", True),
        ("completed", True),
        ("discarded", False),
        ("cancelled", False),
    ],
)
async def test_default_states_are_obans_successful_group(
    client: jobrunner.Client, db: asyncpg.Connection, state: str, conflicts: bool
) -> None:
    first = await client.insert(sync.new({"id": 1}))
    await set_state(db, first.id, state)
    again = await client.insert(sync.new({"id": 1}))
    assert again.conflict is conflicts
    assert (again.id == first.id) is conflicts
    if conflicts:
        assert again.state is JobState(state)


async def test_new_jobs_states_decide_against_older_jobs(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    """A completed job (unique in the default states) does not block an 'incomplete' one."""
    first = await client.insert(sync.new({"id": 1}))
    await set_state(db, first.id, "completed")
    incomplete = Unique(period=300, states="incomplete")
    fresh = await client.insert(sync.new({"id": 1}, unique=incomplete))
    assert not fresh.conflict
    again = await client.insert(sync.new({"id": 1}, unique=incomplete))
    assert again.conflict and again.id == fresh.id
    await set_state(db, fresh.id, "completed")  # leaves its unique states: released
    assert (await client.get_job(fresh.id)).unique_key is None  # type: ignore[union-attr]
    assert not (await client.insert(sync.new({"id": 1}, unique=incomplete))).conflict


async def test_cancelled_job_releases_its_key(client: jobrunner.Client) -> None:
    first = await client.insert(sync.new({"id": 1}))
    await client.cancel_job(first.id)
    assert not (await client.insert(sync.new({"id": 1}))).conflict


async def test_scheduled_group_debounces(client: jobrunner.Client, db: asyncpg.Connection) -> None:
    debounce = Unique(period=None, states="scheduled")
    first = await client.insert(plain.new({"doc": 1}, schedule_in=60, unique=debounce))
    assert first.state is JobState.SCHEDULED and first.unique_key is not None
    assert (await client.insert(plain.new({"doc": 1}, schedule_in=60, unique=debounce))).conflict
    now = await client.insert(plain.new({"doc": 1}, unique=debounce))  # available: not held
    assert not now.conflict and now.unique_key is None
    await set_state(db, first.id, "available")  # staged: no longer scheduled
    later = await client.insert(plain.new({"doc": 1}, schedule_in=60, unique=debounce))
    assert not later.conflict and later.id not in (first.id, now.id)
    assert await count(db) == 3


async def test_insert_all_with_duplicates_within_and_across_batches(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    existing = await client.insert(sync.new({"id": 0}))
    batch = [
        sync.new({"id": 1}),
        plain.new({"n": 1}),
        sync.new({"id": 1}),
        sync.new({"id": 0}),
        sync.new({"id": 2}),
        plain.new({"n": 1}),
        sync.new({"id": 2}),
    ]
    jobs = await client.insert_all(batch)
    assert [j.conflict for j in jobs] == [False, False, True, True, False, False, True]
    assert jobs[2] == replace(jobs[0], conflict=True)
    assert jobs[3] == replace(existing, conflict=True)
    assert jobs[6].id == jobs[4].id
    assert jobs[1].id != jobs[5].id
    assert [j.args for j in jobs] == [b.args for b in batch]
    assert await count(db) == 1 + 4

    again = await client.insert_all([sync.new({"id": 2}), sync.new({"id": 1})])
    assert [(j.id, j.conflict) for j in again] == [(jobs[4].id, True), (jobs[0].id, True)]
    assert await count(db) == 5


async def test_concurrent_inserts_of_one_unique_job_make_one_row(
    client: jobrunner.Client, db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    async def insert_one(conn: asyncpg.Connection, start: asyncio.Event, round_: int) -> Job:
        await start.wait()
        return await client.insert(sync.new({"round": round_}), conn=conn)

    for round_ in range(5):
        start = asyncio.Event()
        connections = [await pool.acquire() for _ in range(20)]
        try:
            tasks = [asyncio.create_task(insert_one(c, start, round_)) for c in connections]
            start.set()
            jobs = await asyncio.gather(*tasks)
        finally:
            for conn in connections:
                await pool.release(conn)
        assert len({j.id for j in jobs}) == 1
        assert sum(not j.conflict for j in jobs) == 1
    assert await count(db) == 5


async def test_concurrent_transactions_inserting_one_unique_job_make_one_row(
    client: jobrunner.Client, db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    start = asyncio.Event()

    async def in_transaction(n: int) -> Job:
        async with pool.acquire() as conn, conn.transaction():
            await start.wait()
            return await client.insert(sync.new({"order": 1}, meta={"by": n}), conn=conn)

    tasks = [asyncio.create_task(in_transaction(n)) for n in range(20)]
    start.set()
    jobs = await asyncio.gather(*tasks)
    assert len({j.id for j in jobs}) == 1
    assert sum(not j.conflict for j in jobs) == 1
    assert await count(db) == 1


async def test_concurrent_bulk_inserts_with_overlapping_keys(
    client: jobrunner.Client, db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    start = asyncio.Event()
    rng = random.Random(7)
    batches = []
    for _ in range(10):
        keys = [rng.randrange(30) for _ in range(40)]  # duplicates within batches too
        batches.append([sync.new({"key": k}) for k in keys])

    async def insert_batch(batch: list[jobrunner.NewJob]) -> list[Job]:
        async with pool.acquire() as conn:
            await start.wait()
            return await client.insert_all(batch, conn=conn)

    tasks = [asyncio.create_task(insert_batch(b)) for b in batches]
    start.set()
    results = await asyncio.gather(*tasks)
    ids_by_key: dict[int, set[int]] = {}
    fresh = 0
    for batch, jobs in zip(batches, results, strict=True):
        assert len(jobs) == len(batch)
        for new, job in zip(batch, jobs, strict=True):
            assert job.args == new.args
            ids_by_key.setdefault(job.args["key"], set()).add(job.id)
            fresh += not job.conflict
    assert all(len(ids) == 1 for ids in ids_by_key.values())
    assert fresh == len(ids_by_key)
    assert await count(db) == len(ids_by_key)


async def test_an_uncommitted_duplicate_decides_at_its_commit(
    client: jobrunner.Client, db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    async def waiting_on_lock(conn: asyncpg.Connection) -> bool:
        event = await db.fetchval(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", conn.get_server_pid()
        )
        assert event == "Lock"
        return True

    for outcome in ("commit", "rollback"):
        holder = await pool.acquire()
        waiter = await pool.acquire()
        try:
            tx = holder.transaction()
            await tx.start()
            held = await client.insert(sync.new({"outcome": outcome}), conn=holder)
            blocked = asyncio.create_task(
                client.insert(sync.new({"outcome": outcome}), conn=waiter)
            )

            await eventually(functools.partial(waiting_on_lock, waiter), timeout_s=20)
            assert not blocked.done()
            if outcome == "commit":
                await tx.commit()
            else:
                await tx.rollback()
            job = await asyncio.wait_for(blocked, 20)
        finally:
            await pool.release(holder)
            await pool.release(waiter)
        if outcome == "commit":
            assert job.conflict and job.id == held.id
        else:
            assert not job.conflict and job.id != held.id
        assert await client.get_job(job.id) is not None
    assert await count(db) == 2
