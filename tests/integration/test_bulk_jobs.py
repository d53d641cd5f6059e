"""One job filter for listings and bulk actions: exactly the matching jobs change, executing
ones stop on their node, batches stay bounded, and bad filters change nothing."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

import jobrunner
from jobrunner import InvalidFilter, Job, JobState, worker
from jobrunner.core.job_filter import JobFilter
from jobrunner.db import queries as _queries
from tests.helpers import eventually

QUEUE = "bulk"


@worker(name="bulk_tests.mail", queue=QUEUE)
async def mail(job: Job) -> None: ...


@worker(name="bulk_tests.other", queue="elsewhere")
async def other(job: Job) -> None: ...


async def states(db: asyncpg.Connection) -> dict[int, str]:
    rows = await db.fetch("SELECT id, state::text FROM jobrunner_jobs")
    return {r["id"]: r["state"] for r in rows}


async def test_cancel_by_args_containment_changes_exactly_the_matching_jobs(
    client: jobrunner.Client, make_runner, db: asyncpg.Connection
) -> None:
    started: asyncio.Queue[int] = asyncio.Queue()
    stopped: asyncio.Queue[int] = asyncio.Queue()

    @worker(name="bulk_tests.long", queue=QUEUE)
    async def long(job: Job) -> None:
        started.put_nowait(job.id)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.put_nowait(job.id)
            raise

    async with make_runner(queues={QUEUE: 5}) as runner:
        running = [await client.insert(long.new({"user_id": 7, "n": n})) for n in range(2)]
        other_running = await client.insert(long.new({"user_id": 8}))
        assert {await asyncio.wait_for(started.get(), 15) for _ in range(3)} == {
            j.id for j in [*running, other_running]
        }
        waiting = await client.insert_all(
            [mail.new({"user_id": 7, "n": n}, schedule_in=600) for n in range(5)]
            + [mail.new({"user_id": 8}, schedule_in=600), other.new({"user_id": 7})]
        )
        done = await client.insert(mail.new({"user_id": 7}, schedule_in=600))
        await db.execute("UPDATE jobrunner_jobs SET state = 'completed' WHERE id = $1", done.id)
        before = await states(db)

        ids = await client.cancel_jobs(queue=QUEUE, args={"user_id": 7})

        expected = {j.id for j in running} | {j.id for j in waiting[:5]}
        assert ids == sorted(expected)
        after = await states(db)
        assert {i for i, s in after.items() if s != before[i]} == expected
        assert all(after[i] == "cancelled" for i in expected)
        assert {await asyncio.wait_for(stopped.get(), 15) for _ in running} == {
            j.id for j in running
        }
        assert stopped.empty()
        assert (await client.get_job(other_running.id)).state is JobState.EXECUTING  # type: ignore[union-attr]
        await client.cancel_job(other_running.id)
        await asyncio.wait_for(stopped.get(), 15)
        await eventually(lambda: _idle(runner))


async def _idle(runner: jobrunner.Runner) -> bool:
    return all(p.running == 0 for p in runner.producers.values())


async def test_retry_and_delete_by_filter(client: jobrunner.Client, db: asyncpg.Connection) -> None:
    jobs = await client.insert_all(
        [mail.new({"n": n}, tags=["a", "b"] if n % 2 else ["a"]) for n in range(6)]
    )
    await db.execute("UPDATE jobrunner_jobs SET state = 'discarded', discarded_at = now()")
    await db.execute("UPDATE jobrunner_jobs SET state = 'executing' WHERE id = $1", jobs[1].id)
    retried = await client.retry_jobs(state="discarded", tags=["a", "b"])
    assert retried == [jobs[3].id, jobs[5].id]  # jobs[1] executes: left alone
    assert (await client.get_job(jobs[3].id)).state is JobState.AVAILABLE  # type: ignore[union-attr]
    listed = await client.list_jobs(state=["discarded"], tags=["a"], limit=100)
    assert [j.id for j in listed] == [jobs[4].id, jobs[2].id, jobs[0].id]
    deleted = await client.delete_jobs(state="discarded")
    assert deleted == [jobs[0].id, jobs[2].id, jobs[4].id]
    assert set(await states(db)) == {jobs[1].id, jobs[3].id, jobs[5].id}
    assert await client.delete_jobs(all_jobs=True) == [jobs[3].id, jobs[5].id]
    assert await client.delete_job(jobs[1].id) is False  # executing


async def test_time_bounds(client: jobrunner.Client, db: asyncpg.Connection) -> None:
    old, new = await client.insert_all([mail.new({"n": 1}), mail.new({"n": 2})])
    await db.execute(
        "UPDATE jobrunner_jobs SET inserted_at = now() - interval '2 days' WHERE id = $1", old.id
    )
    yesterday = datetime.now(UTC) - timedelta(days=1)
    assert [j.id for j in await client.list_jobs(inserted_before=yesterday)] == [old.id]
    assert [j.id for j in await client.list_jobs(inserted_after=yesterday)] == [new.id]
    assert await client.cancel_jobs(inserted_before=yesterday) == [old.id]


async def test_batches_are_bounded_and_cover_every_match(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    jobs = await client.insert_all([mail.new({"n": n, "even": n % 2 == 0}) for n in range(25)])
    ids = await _queries.bulk_jobs(
        client.pool, JobFilter.build(args={"even": True}), action="cancel", batch_size=4
    )
    assert ids == [j.id for j in jobs if j.args["even"]]
    assert (
        await _queries.bulk_jobs(
            client.pool, JobFilter.build(args={"even": True}), action="cancel", batch_size=4
        )
        == []
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"state": "done"}, "unknown job state 'done'"),
        ({"args": [1]}, "args must be a JSON object"),
        ({"inserted_after": datetime(2026, 1, 1)}, "must be a timezone-aware datetime"),
        ({"tags": "a"}, "tags must be a list of strings"),
        ({}, "give a filter, or all_jobs=True"),
    ],
)
async def test_bad_filters_change_nothing(
    client: jobrunner.Client, db: asyncpg.Connection, call: dict, message: str
) -> None:
    await client.insert(mail.new({"n": 1}))
    before = await states(db)
    for action in (client.cancel_jobs, client.retry_jobs, client.delete_jobs):
        with pytest.raises(InvalidFilter, match=message):
            await action(**call)
    assert await states(db) == before


async def test_unknown_filter_key(client: jobrunner.Client, db: asyncpg.Connection) -> None:
    with pytest.raises(InvalidFilter, match="unknown job filter 'user'; filters are state, "):
        JobFilter.from_mapping({"state": "available", "user": 7})
    assert JobFilter.from_mapping({"queue": "q"}) == JobFilter(queue="q")
    await client.insert(mail.new({"user_id": 7}))
    before = await states(db)
    with pytest.raises(InvalidFilter, match="unknown job filter 'user_id'"):
        await client.cancel_jobs(user_id=7)  # type: ignore[call-arg]
    with pytest.raises(InvalidFilter, match="unknown job filter 'status'"):
        await client.list_jobs(status="available")  # type: ignore[call-arg]
    assert await states(db) == before


async def test_the_readmes_queries_on_the_jobs_table(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("<!-- section:jobs-table -->")[1].split("<!-- /section:jobs-table")[0]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.S)
    assert len(blocks) == 1
    scheduled_q, failed_q = [q.strip() for q in blocks[0].split(";") if q.strip()]

    @worker(name="bulk_tests.fails", queue=QUEUE, max_attempts=1)
    async def fails(job: Job) -> None:
        raise RuntimeError("boom")

    later = await client.insert(mail.new({"n": 1}, schedule_in=600))
    failed = await client.insert(fails.new({"n": 2}))
    await db.execute(
        "UPDATE jobrunner_jobs SET state = 'discarded', attempted_at = now(), attempt = 1, "
        "errors = jsonb_build_array(jsonb_build_object('error', 'RuntimeError: boom')) "
        "WHERE id = $1",
        failed.id,
    )
    assert [r["id"] for r in await db.fetch(scheduled_q)] == [later.id]
    rows = await db.fetch(failed_q)
    assert [(r["id"], r["last_error"]) for r in rows] == [(failed.id, "RuntimeError: boom")]


async def test_a_substring_of_the_args_lists_counts_and_changes_the_same_jobs(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    alice = await client.insert(mail.new({"to": "alice@example.com"}))
    also = await client.insert(mail.new({"cc": ["bob", "alice@example.com"]}))
    bob = await client.insert(mail.new({"to": "bob@example.com"}))
    listed = await client.list_jobs(args_text="alice@", limit=10)
    assert [j.id for j in listed] == [also.id, alice.id]  # newest first
    where = JobFilter.build(args_text="alice@")
    assert await _queries.count_matching_jobs(client.pool, where, action="cancel") == 2
    oldest = await _queries.list_jobs_oldest(client.pool, where, limit=1, after_id=alice.id)
    assert [j.id for j in oldest] == [also.id]  # a keyset page after the first
    assert await client.cancel_jobs(args_text="alice@") == [alice.id, also.id]
    assert (await states(db))[bob.id] == "available"
    with pytest.raises(InvalidFilter, match="args_text must be a non-empty string"):
        await client.cancel_jobs(args_text="")
