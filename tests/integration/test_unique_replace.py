"""Unique replace, as Oban's: a duplicate overwrites fields of the existing job in the insert
statement itself, under concurrency and in insert_all; an executing job is never replaced."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

import jobrunner
from jobrunner import InvalidJob, Job, JobState, Unique, worker


@worker(
    name="replace_tests.debounce",
    unique=Unique(period=None, keys=["doc_id"], replace=["scheduled_at", "args"]),
)
async def debounce(job: Job) -> None: ...


@worker(
    name="replace_tests.by_state",
    unique=Unique(
        period=None, keys=["doc_id"], states="incomplete", replace={"scheduled": ["scheduled_at"]}
    ),
)
async def by_state(job: Job) -> None: ...


@worker(
    name="replace_tests.everything",
    unique=Unique(
        period=None,
        fields=["worker"],
        keys=["k"],
        replace=["args", "meta", "tags", "priority", "max_attempts", "queue"],
    ),
)
async def everything(job: Job) -> None: ...


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


@pytest.fixture
async def pool(dsn: str, db: asyncpg.Connection) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(dsn, min_size=20, max_size=20)
    assert created is not None
    try:
        yield created
    finally:
        await created.close()


async def test_list_form_replaces_scheduled_at_and_args(client: jobrunner.Client) -> None:
    first = await client.insert(debounce.new({"doc_id": 1, "v": 1}, schedule_in=60))
    second = await client.insert(debounce.new({"doc_id": 1, "v": 2}, schedule_in=600))
    assert second.conflict is True and second.id == first.id
    assert second.args == {"doc_id": 1, "v": 2}
    assert second.state is JobState.SCHEDULED
    assert second.scheduled_at is not None and first.scheduled_at is not None
    assert second.scheduled_at - first.scheduled_at > timedelta(seconds=500)
    stored = await client.get_job(first.id)
    assert stored is not None and stored.args == second.args
    assert stored.scheduled_at == second.scheduled_at


async def test_a_waiting_job_moved_later_does_not_run_at_its_old_time(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    first = await client.insert(debounce.new({"doc_id": 2}))
    assert first.state is JobState.AVAILABLE
    moved = await client.insert(debounce.new({"doc_id": 2}, schedule_in=3600))
    assert moved.id == first.id and moved.state is JobState.SCHEDULED
    state = await db.fetchval("SELECT state::text FROM jobrunner_jobs WHERE id = $1", first.id)
    assert state == "scheduled"
    back = await client.insert(debounce.new({"doc_id": 2}))
    assert back.id == first.id and back.state is JobState.AVAILABLE


async def test_mapping_form_replaces_only_in_the_named_state(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    first = await client.insert(by_state.new({"doc_id": 3}, schedule_in=60))
    second = await client.insert(by_state.new({"doc_id": 3}, schedule_in=900))
    assert second.conflict and second.scheduled_at != first.scheduled_at
    await db.execute("UPDATE jobrunner_jobs SET state = 'retryable' WHERE id = $1", first.id)
    third = await client.insert(by_state.new({"doc_id": 3}, schedule_in=5))
    assert third.conflict and third.state is JobState.RETRYABLE
    assert third.scheduled_at == second.scheduled_at  # retryable is not named: kept


async def test_every_replaceable_field(client: jobrunner.Client) -> None:
    first = await client.insert(everything.new({"k": 1, "a": 1}))
    second = await client.insert(
        everything.new(
            {"k": 1, "a": 2},
            meta={"m": 1},
            tags=["x", "y"],
            priority=7,
            max_attempts=3,
            queue="elsewhere",
        )
    )
    assert second.id == first.id and second.conflict
    assert (second.args, second.meta, second.tags) == ({"k": 1, "a": 2}, {"m": 1}, ("x", "y"))
    assert (second.priority, second.max_attempts, second.queue) == (7, 3, "elsewhere")
    assert second.worker == first.worker


async def test_an_executing_job_is_never_replaced(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    first = await client.insert(everything.new({"k": 9, "a": 1}))
    await db.execute("UPDATE jobrunner_jobs SET state = 'executing' WHERE id = $1", first.id)
    second = await client.insert(everything.new({"k": 9, "a": 2}, priority=9))
    assert second.conflict and second.id == first.id
    assert second.args == {"k": 9, "a": 1} and second.priority == first.priority


async def test_insert_all_replaces_and_later_duplicates_win(client: jobrunner.Client) -> None:
    existing = await client.insert(debounce.new({"doc_id": 10, "v": 0}, schedule_in=60))
    jobs = await client.insert_all(
        [
            debounce.new({"doc_id": 10, "v": 1}, schedule_in=100),
            debounce.new({"doc_id": 11, "v": 1}, schedule_in=100),
            debounce.new({"doc_id": 11, "v": 2}, schedule_in=200),
            debounce.new({"doc_id": 11, "v": 3}, schedule_in=300),
        ]
    )
    assert jobs[0].id == existing.id and jobs[0].conflict and jobs[0].args["v"] == 1
    assert jobs[1].id == jobs[2].id == jobs[3].id
    assert [j.conflict for j in jobs[1:]] == [False, True, True]
    assert jobs[3].args["v"] == 3
    stored = await client.get_job(jobs[1].id)
    assert stored is not None and stored.args["v"] == 3
    assert stored.scheduled_at == jobs[3].scheduled_at


async def test_twenty_concurrent_inserts_leave_one_job_at_the_last_writers_time(
    client: jobrunner.Client, pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    gate = asyncio.Event()
    finished: list[tuple[int, Job]] = []
    clients = [jobrunner.connect(client.dsn, pool=pool) for _ in range(20)]

    async def insert(n: int) -> None:
        await gate.wait()
        job = await clients[n].insert(debounce.new({"doc_id": 42, "n": n}, schedule_in=60 + n))
        finished.append((n, job))

    tasks = [asyncio.create_task(insert(n)) for n in range(20)]
    gate.set()
    await asyncio.gather(*tasks)
    rows = await db.fetch(
        "SELECT id, args, scheduled_at FROM jobrunner_jobs WHERE worker = $1", debounce.name
    )
    assert len(rows) == 1
    assert {job.id for _, job in finished} == {rows[0]["id"]}
    # Each insert returns what it wrote; the table holds the values of the last one to commit.
    last = max((job for _, job in finished), key=lambda j: j.scheduled_at or datetime.min)
    by_commit = {job.args["n"]: job for _, job in finished}
    stored = await client.get_job(rows[0]["id"])
    assert stored is not None
    assert stored.args == by_commit[stored.args["n"]].args
    assert stored.scheduled_at == by_commit[stored.args["n"]].scheduled_at
    assert sum(not job.conflict for _, job in finished) == 1
    assert last.scheduled_at is not None


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        (["scheduled_at", "state"], "unknown unique replace field 'state'"),
        ({"later": ["args"]}, "unknown job state 'later'"),
        ({"executing": ["args"]}, "cannot name 'executing'"),
        ("args", "must be a list of fields or a mapping"),
        ({"scheduled": "args"}, "fields must be a list"),
    ],
)
def test_bad_replace_is_refused(replace: object, message: str) -> None:
    with pytest.raises(InvalidJob, match=message):
        Unique(replace=replace)  # type: ignore[arg-type]
