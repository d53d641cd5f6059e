"""jobrunner.testing and the inline mode: failure messages, edge cases and drain semantics."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import jobrunner
from jobrunner import Cancel, Discard, InvalidJob, Job, JobState, Snooze, UnknownWorker, worker
from jobrunner.core.config import Settings
from jobrunner.core.errors import JobRunnerError
from jobrunner.core.worker import lookup
from jobrunner.db import migrate as _migrate
from jobrunner.db import queries as _queries
from jobrunner.engine.executor import JobTimeout
from jobrunner.testing import (
    all_enqueued,
    assert_enqueued,
    drain_queue,
    perform_job,
    refute_enqueued,
)
from tests.helpers import eventually

RAN: list[Job] = []
NODES: list[int] = []  # how many rows the running job's node had, seen from inside the job


@pytest.fixture(autouse=True)
def _forget_runs() -> None:
    RAN.clear()
    NODES.clear()


@worker(queue="helpers", max_attempts=3, priority=2, tags=["t"], name="helpers.act")
async def act(job: Job) -> Any:
    """Does what args.do says: ok, fail, snooze, cancel, discard, insert (a follow-up)."""
    RAN.append(job)
    do = job.args.get("do", "ok")
    if do == "fail":
        raise RuntimeError(f"failed {job.args.get('n')}")
    if do == "snooze":
        return Snooze(0)
    if do == "cancel":
        return Cancel("no")
    if do == "discard":
        return Discard("gone")
    if do == "insert":
        await jobrunner.current_client().insert(act.new({"n": job.args["n"] + 1}))
    if do == "node":
        rows = await jobrunner.current_client().pool.fetch(
            "SELECT name FROM jobrunner_nodes WHERE name = $1", job.attempted_by[0]
        )
        NODES.append(len(rows))
    return None


@worker(queue="helpers", name="helpers.other")
async def other(job: Job) -> None:
    RAN.append(job)


@worker(queue="helpers", timeout=0.05, name="helpers.slow")
async def slow(job: Job) -> None:
    await asyncio.Event().wait()


@worker(queue="helpers", name="helpers.Klass")
class Klass:
    async def perform(self, job: Job) -> str:
        return f"class {job.args['n']}"


@pytest.fixture
async def inline_client(
    db: asyncpg.Connection, settings: Settings
) -> AsyncIterator[jobrunner.Client]:
    async with jobrunner.connect(settings=settings, testing="inline") as connected:
        yield connected


async def state_of(client: jobrunner.Client, job: Job) -> JobState:
    fresh = await client.get_job(job.id)
    assert fresh is not None
    return fresh.state


# --- perform_job -----------------------------------------------------------------------------


async def test_perform_job_builds_the_job_the_daemon_would() -> None:
    assert await perform_job(act, {"n": 1}, attempt=2, meta={"m": 1}, id=7) is None
    job = RAN[0]
    assert (job.id, job.attempt, job.max_attempts, job.state) == (7, 2, 3, JobState.EXECUTING)
    assert (job.queue, job.priority, job.tags, job.meta) == ("helpers", 2, ("t",), {"m": 1})
    assert job.attempted_at is not None and job.attempted_by


async def test_perform_job_takes_a_class_a_name_or_a_worker() -> None:
    assert await perform_job(Klass, {"n": 1}) == "class 1"
    assert await perform_job("helpers.Klass", {"n": 2}) == "class 2"
    assert await perform_job(Klass.worker, {"n": 3}) == "class 3"  # type: ignore[attr-defined]


async def test_perform_job_returns_outcomes_and_raises_errors() -> None:
    assert await perform_job(act, {"do": "snooze"}) == Snooze(0)
    assert await perform_job(act, {"do": "cancel"}) == Cancel("no")
    assert await perform_job(act, {"do": "discard"}) == Discard("gone")
    with pytest.raises(RuntimeError, match="failed 5"):
        await perform_job(act, {"do": "fail", "n": 5})
    with pytest.raises(JobTimeout, match=r"timed out after 0\.05s"):
        await perform_job(slow, {})


async def test_perform_job_rejects_what_an_insert_would() -> None:
    with pytest.raises(UnknownWorker, match=r"unknown worker 'helpers\.nope'"):
        await perform_job("helpers.nope", {})
    with pytest.raises(UnknownWorker, match="is not a jobrunner worker"):
        await perform_job(print, {})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unknown job field 'atempt'; perform_job accepts"):
        await perform_job(act, {}, atempt=2)
    with pytest.raises(TypeError, match="unknown job field 'state'"):
        await perform_job(act, {}, state="completed")
    with pytest.raises(InvalidJob, match="JSON round trip"):
        await perform_job(act, {1: "non-string key"})  # type: ignore[dict-item]
    with pytest.raises(InvalidJob, match="JSON round trip"):
        await perform_job(act, {"pair": (1, 2)})
    with pytest.raises(InvalidJob, match="JSON-serialisable"):
        await perform_job(act, {"when": datetime.now(UTC)})
    with pytest.raises(InvalidJob, match="attempt must be an integer from 1 to max_attempts"):
        await perform_job(act, {}, attempt=4)
    with pytest.raises(InvalidJob, match="priority"):
        await perform_job(act, {}, priority=10)
    assert RAN == []


async def test_perform_job_without_a_client_says_how_to_give_one(client: jobrunner.Client) -> None:
    with pytest.raises(JobRunnerError, match=r"pass perform_job\(\.\.\., client=client\)"):
        await perform_job(act, {"do": "insert", "n": 1})
    await perform_job(act, {"do": "insert", "n": 1}, client=client)
    await assert_enqueued(client, worker=act, args={"n": 2})


async def test_a_worker_name_held_by_another_worker_is_refused() -> None:
    @worker(name="helpers.reused")
    async def first(job: Job) -> str:
        return "first"

    with pytest.raises(ValueError, match=r"'helpers.reused' is already taken by .*first"):

        @worker(name="helpers.reused")
        async def second(job: Job) -> str:
            return "second"

    assert lookup("helpers.reused") is first
    assert await perform_job(first, {}) == "first"


def test_the_same_definition_registering_again_replaces_itself() -> None:
    def define() -> Any:
        @worker(name="helpers.again")
        async def again(job: Job) -> None:
            return None

        return again

    define()
    latest = define()  # a module imported a second time
    assert lookup("helpers.again") is latest


# --- assert_enqueued, refute_enqueued, all_enqueued ----------------------------------------


async def test_assert_enqueued_says_nothing_is_enqueued(client: jobrunner.Client) -> None:
    with pytest.raises(AssertionError) as failed:
        await assert_enqueued(client, worker=act, args={"n": 1})
    assert str(failed.value) == (
        "expected a job enqueued with worker='helpers.act', args containing {'n': 1}, "
        "state in (available, scheduled, retryable); found none; "
        "no job is enqueued in those states"
    )


async def test_assert_enqueued_lists_near_misses_first(client: jobrunner.Client) -> None:
    await client.insert(other.new({"n": 1}))
    await client.insert_all([act.new({"n": n}, meta={"m": n}) for n in range(7)])
    with pytest.raises(AssertionError) as failed:
        await assert_enqueued(client, worker=act, args={"n": 9}, queue="helpers")
    lines = str(failed.value).splitlines()
    assert lines[0].endswith("found none among 8 enqueued jobs:")
    assert lines[1] == (
        "  #2 helpers.act queue='helpers' state=available args={'n': 0} "
        "meta={'m': 0} priority=2 tags=['t']  (differs in args)"
    )
    assert lines[6] == "  ... and 3 more"
    assert len(lines) == 7


async def test_assert_enqueued_points_at_matches_in_other_states(client: jobrunner.Client) -> None:
    await client.insert(act.new({"n": 1}))
    await drain_queue(client, "helpers")
    with pytest.raises(AssertionError, match=r"1 matching job\(s\) in other states, pass state="):
        await assert_enqueued(client, worker=act, args={"n": 1})
    job = await assert_enqueued(client, worker=act, args={"n": 1}, state="completed")
    assert job.state is JobState.COMPLETED
    with pytest.raises(InvalidJob, match="unknown job state 'done'"):
        await assert_enqueued(client, worker=act, state="done")


async def test_args_and_meta_match_as_jsonb_containment(client: jobrunner.Client) -> None:
    args = {"user": {"id": 1, "roles": ["a", "b"]}, "flag": True, "count": 1}
    await client.insert(act.new(args, meta={"trace": "x", "extra": 1}))
    await assert_enqueued(client, args={"user": {"roles": ["b"]}}, meta={"trace": "x"})
    await assert_enqueued(client, args={"count": 1.0, "flag": True})
    await assert_enqueued(client, args={"user": {"roles": ("a",)}})  # as JSON: a list
    await refute_enqueued(client, args={"flag": 1})  # true is not 1 in JSON
    await refute_enqueued(client, args={"count": True})
    await refute_enqueued(client, args={"user": {"roles": ["c"]}})
    await refute_enqueued(client, meta={"trace": "y"})
    with pytest.raises(InvalidJob, match="args must be JSON-serialisable"):
        await assert_enqueued(client, args={"x": object()})


async def test_the_other_fields_filter(client: jobrunner.Client) -> None:
    await client.insert(act.new({"n": 1}, queue="q1", priority=5, tags=["a", "b"]))
    await client.insert(other.new({"n": 2}, queue="q2"))
    assert [j.args for j in await all_enqueued(client, worker="helpers.act")] == [{"n": 1}]
    assert [j.args for j in await all_enqueued(client, queue="q2")] == [{"n": 2}]
    assert len(await all_enqueued(client)) == 2
    await assert_enqueued(client, priority=5, tags=["b"])
    with pytest.raises(AssertionError, match=r"(?s)tags including \['c'\].*differs in tags"):
        await assert_enqueued(client, tags=["c"], worker=act)
    await refute_enqueued(client, priority=4)
    await refute_enqueued(client, tags=["c"])
    with pytest.raises(InvalidJob, match="tags must be a list of strings"):
        await assert_enqueued(client, tags="a")
    with pytest.raises(TypeError, match="unknown job filter 'wroker'; use worker, args"):
        await all_enqueued(client, wroker=act)  # type: ignore[call-arg]


async def test_scheduled_at_matches_within_a_tolerance(client: jobrunner.Client) -> None:
    job = await client.insert(act.new({}, schedule_in=3600))
    assert job.scheduled_at is not None
    at = job.scheduled_at
    await assert_enqueued(client, scheduled_at=at + timedelta(seconds=0.9))
    await refute_enqueued(client, scheduled_at=at + timedelta(seconds=1.1))
    await assert_enqueued(client, scheduled_at=(at + timedelta(seconds=50), 60))
    await assert_enqueued(client, scheduled_at=(at - timedelta(minutes=1), timedelta(minutes=2)))
    with pytest.raises(AssertionError, match=r"(?s)scheduled_at=.* ± 1s.*differs in scheduled_at"):
        await assert_enqueued(client, scheduled_at=at + timedelta(seconds=5))
    with pytest.raises(InvalidJob, match="timezone-aware"):
        await assert_enqueued(client, scheduled_at=datetime.now())


async def test_refute_enqueued_lists_what_it_found(client: jobrunner.Client) -> None:
    await refute_enqueued(client, worker=act)
    await client.insert(act.new({"n": 1}))
    with pytest.raises(AssertionError) as failed:
        await refute_enqueued(client, worker=act)
    assert str(failed.value).splitlines() == [
        "expected no job enqueued with worker='helpers.act', "
        "state in (available, scheduled, retryable); found 1:",
        "  #1 helpers.act queue='helpers' state=available args={'n': 1} priority=2 tags=['t']",
    ]


async def test_assert_enqueued_waits_up_to_its_timeout(
    client: jobrunner.Client, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked = asyncio.Event()
    real = _queries.enqueued_jobs

    async def watched(*args: Any, **kwargs: Any) -> list[Job]:
        found = await real(*args, **kwargs)
        looked.set()
        return found

    monkeypatch.setattr(_queries, "enqueued_jobs", watched)

    async def insert_after_a_look() -> None:
        await looked.wait()
        await client.insert(act.new({"n": 1}))

    inserting = asyncio.create_task(insert_after_a_look())
    job = await assert_enqueued(client, worker=act, timeout=10)
    await inserting
    assert job.args == {"n": 1}
    with pytest.raises(AssertionError, match=r"found none within 0.1s"):
        await assert_enqueued(client, worker=other, timeout=0.1)


async def test_refute_enqueued_with_a_timeout_fails_once_the_job_appears(
    client: jobrunner.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked = asyncio.Event()
    real = _queries.enqueued_jobs

    async def watched(*args: Any, **kwargs: Any) -> list[Job]:
        found = await real(*args, **kwargs)
        looked.set()
        return found

    monkeypatch.setattr(_queries, "enqueued_jobs", watched)

    async def insert_after_a_look() -> None:
        await looked.wait()
        await client.insert(act.new({"n": 1}))

    inserting = asyncio.create_task(insert_after_a_look())
    with pytest.raises(AssertionError, match="found 1"):
        await refute_enqueued(client, worker=act, timeout=10)
    await inserting
    await refute_enqueued(client, worker=other, timeout=0.1)


# --- drain_queue -----------------------------------------------------------------------------


async def test_drain_counts_every_outcome(client: jobrunner.Client) -> None:
    dos = ["ok", "ok", "fail", "snooze", "cancel", "discard"]
    jobs = await client.insert_all([act.new({"do": do, "n": i}) for i, do in enumerate(dos)])
    last = await client.insert(act.new({"do": "fail", "n": 9}, max_attempts=1))
    await client.insert(other.new({}, queue="elsewhere"))
    result = await drain_queue(client, "helpers")
    assert result.as_dict() == {
        "completed": 2,
        "failure": 1,
        "snoozed": 1,
        "cancelled": 1,
        "discarded": 2,
    }
    assert result.total == 7
    assert [str(e) for e in result.exceptions] == ["failed 2", "failed 9"]
    assert await state_of(client, jobs[2]) is JobState.RETRYABLE
    assert await state_of(client, jobs[3]) is JobState.SCHEDULED
    assert await state_of(client, last) is JobState.DISCARDED
    await assert_enqueued(client, queue="elsewhere")


async def test_drain_runs_due_jobs_and_future_ones_only_with_scheduled(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    later = await client.insert(act.new({"n": 1}, schedule_in=3600))
    due = await client.insert(act.new({"n": 2}, schedule_in=3600))
    await db.execute(
        "UPDATE jobrunner_jobs SET state = 'retryable', scheduled_at = now() WHERE id = $1", due.id
    )
    assert (await drain_queue(client, "helpers")).completed == 1
    assert [j.id for j in RAN] == [due.id]
    assert (await drain_queue(client, "helpers", with_scheduled=True)).completed == 1
    assert [j.id for j in RAN] == [due.id, later.id]


async def test_drain_runs_follow_ups_only_with_recursion(client: jobrunner.Client) -> None:
    await client.insert(act.new({"do": "insert", "n": 1}))
    assert (await drain_queue(client, "helpers")).completed == 1
    await assert_enqueued(client, args={"n": 2})
    assert (await drain_queue(client, "helpers", with_recursion=True)).completed == 1
    await client.insert(act.new({"do": "insert", "n": 10}))
    assert (await drain_queue(client, "helpers", with_recursion=True)).completed == 2
    await refute_enqueued(client)


async def test_drain_retries_until_exhausted_only_with_recursion_and_scheduled(
    client: jobrunner.Client,
) -> None:
    failing = await client.insert(act.new({"do": "fail", "n": 1}))  # max_attempts 3
    result = await drain_queue(client, "helpers", with_scheduled=True)
    assert result.as_dict()["failure"] == 1
    result = await drain_queue(client, "helpers", with_scheduled=True, with_recursion=True)
    assert (result.failure, result.discarded) == (1, 1)
    assert await state_of(client, failing) is JobState.DISCARDED
    assert len(RAN) == 3


async def test_a_snoozed_job_runs_once_per_drain(client: jobrunner.Client) -> None:
    await client.insert(act.new({"do": "snooze"}))
    result = await drain_queue(client, "helpers", with_scheduled=True, with_recursion=True)
    assert result.snoozed == 1 and len(RAN) == 1


async def test_drain_with_limit(client: jobrunner.Client) -> None:
    await client.insert_all([act.new({"n": n}) for n in range(25)])
    assert (await drain_queue(client, "helpers", with_limit=12)).completed == 12
    assert [j.args["n"] for j in RAN] == list(range(12))
    assert len(await all_enqueued(client)) == 13
    assert (await drain_queue(client, "helpers", with_limit=0)).total == 0
    with pytest.raises(ValueError, match="with_limit must be an integer >= 0 or None, got -1"):
        await drain_queue(client, "helpers", with_limit=-1)


async def test_without_safety_the_error_propagates_once_recorded(client: jobrunner.Client) -> None:
    jobs = await client.insert_all(
        [act.new({"do": do, "n": n}) for n, do in enumerate(["ok", "fail", "ok"])]
    )
    with pytest.raises(RuntimeError, match="failed 1"):
        await drain_queue(client, "helpers", with_safety=False)
    assert await state_of(client, jobs[0]) is JobState.COMPLETED
    failed = await client.get_job(jobs[1].id)
    assert failed is not None and failed.state is JobState.RETRYABLE
    assert failed.errors[0].error == "RuntimeError: failed 1"
    left = await client.get_job(jobs[2].id)  # claimed with the others, then released
    assert left is not None and (left.state, left.attempt) == (JobState.AVAILABLE, 0)


async def test_drain_registers_a_node_while_it_runs(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    await client.insert(act.new({"do": "node"}))
    await drain_queue(client, "helpers")
    assert NODES == [1]
    assert "-drain-" in RAN[0].attempted_by[0]
    assert await db.fetchval("SELECT count(*) FROM jobrunner_nodes") == 0


async def test_a_draining_node_heartbeats_and_its_jobs_are_not_rescued(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    release = asyncio.Event()
    running: asyncio.Queue[Job] = asyncio.Queue()

    @worker(queue="long", name="helpers.long")
    async def long(job: Job) -> None:
        running.put_nowait(job)
        await release.wait()

    await client.insert(long.new({}))
    draining = asyncio.create_task(drain_queue(client, "long"))
    try:
        job = await asyncio.wait_for(running.get(), timeout=10)
        node = job.attempted_by[0]
        first = await db.fetchval("SELECT heartbeat_at FROM jobrunner_nodes WHERE name = $1", node)

        async def heartbeated() -> bool:
            at = await db.fetchval("SELECT heartbeat_at FROM jobrunner_nodes WHERE name = $1", node)
            return at is not None and at > first

        await eventually(heartbeated, timeout_s=10)
        assert await _queries.rescue_jobs(client.pool, node_lease_s=0) == []
    finally:
        release.set()
    assert (await draining).completed == 1


async def test_drain_beside_a_live_daemon_runs_each_job_once(
    client: jobrunner.Client, make_runner: Any
) -> None:
    jobs = await client.insert_all([act.new({"n": n}) for n in range(60)])
    async with make_runner(queues={"helpers": 3}):
        await drain_queue(client, "helpers")

        async def all_done() -> bool:
            assert await all_enqueued(client, state=["available", "executing"]) == []
            return True

        await eventually(all_done)
    assert sorted(j.id for j in RAN) == sorted(j.id for j in jobs)


async def test_drain_skips_jobs_locked_by_others(client: jobrunner.Client, dsn: str) -> None:
    job = await client.insert(act.new({"n": 1}))
    other_conn = await asyncpg.connect(dsn)
    try:
        async with other_conn.transaction():
            await other_conn.execute(
                "SELECT 1 FROM jobrunner_jobs WHERE id = $1 FOR UPDATE", job.id
            )
            assert (await drain_queue(client, "helpers")).total == 0
    finally:
        await other_conn.close()
    assert (await drain_queue(client, "helpers")).completed == 1


async def test_a_cancelled_drain_puts_its_jobs_back(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    started = asyncio.Event()

    @worker(queue="cancel-me", name="helpers.blocking")
    async def blocking(job: Job) -> None:
        started.set()
        await asyncio.Event().wait()

    jobs = await client.insert_all([blocking.new({"n": n}) for n in range(3)])
    draining = asyncio.create_task(drain_queue(client, "cancel-me"))
    await started.wait()
    draining.cancel()
    with pytest.raises(asyncio.CancelledError):
        await draining
    for job in jobs:
        fresh = await client.get_job(job.id)
        assert fresh is not None and (fresh.state, fresh.attempt) == (JobState.AVAILABLE, 0)
    assert await db.fetchval("SELECT count(*) FROM jobrunner_nodes") == 0


async def test_drain_checks_queue_names(client: jobrunner.Client) -> None:
    from jobrunner.engine.drain import drain

    with pytest.raises(InvalidJob, match="queue name must be"):
        await drain_queue(client, "no spaces")
    with pytest.raises(ValueError, match="queues must name at least one queue"):
        await drain(client, [])
    await client.insert_all(
        [act.new({}, queue="a"), act.new({}, queue="b"), act.new({}, queue="c")]
    )
    assert (await drain(client, ["a", "b"])).completed == 2
    assert (await drain(client, None)).completed == 1


# --- inline mode ---------------------------------------------------------------------------


async def test_inline_mode_runs_each_job_as_it_is_inserted(
    inline_client: jobrunner.Client,
) -> None:
    done = await inline_client.insert(act.new({"n": 1}))
    assert done.state is JobState.COMPLETED and len(RAN) == 1
    scheduled = await inline_client.insert(act.new({"n": 2}, schedule_in=3600))
    assert scheduled.state is JobState.COMPLETED  # as in Oban: inline runs it at once
    failed = await inline_client.insert(act.new({"do": "fail", "n": 3}))
    assert failed.state is JobState.RETRYABLE and failed.attempt == 1
    assert failed.errors[0].error == "RuntimeError: failed 3"
    snoozed, cancelled = await inline_client.insert_all(
        [act.new({"do": "snooze"}), act.new({"do": "cancel"})]
    )
    assert (snoozed.state, snoozed.attempt) == (JobState.SCHEDULED, 0)
    assert cancelled.state is JobState.CANCELLED


async def test_inline_mode_runs_follow_ups_and_keeps_a_node(
    inline_client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    await inline_client.insert(act.new({"do": "insert", "n": 1}))
    assert [j.args["n"] for j in RAN] == [1, 2]
    seen = await inline_client.insert(act.new({"do": "node"}))
    assert seen.state is JobState.COMPLETED and NODES == [1]
    assert await db.fetchval("SELECT count(*) FROM jobrunner_nodes") == 0


async def test_inline_mode_leaves_jobs_inserted_in_an_open_transaction(
    inline_client: jobrunner.Client, dsn: str
) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            job = await inline_client.insert(act.new({"n": 1}), conn=conn)
            assert job.state is JobState.AVAILABLE
        committed = await inline_client.insert(act.new({"n": 2}), conn=conn)
        assert committed.state is JobState.COMPLETED
    finally:
        await conn.close()
    assert [j.args["n"] for j in RAN] == [2]
    assert (await drain_queue(inline_client, "helpers")).completed == 1


async def test_inline_mode_does_not_rerun_a_unique_conflict(
    inline_client: jobrunner.Client,
) -> None:
    unique = jobrunner.Unique(period=None)
    first = await inline_client.insert(act.new({"n": 1}, unique=unique))
    again = await inline_client.insert(act.new({"n": 1}, unique=unique))
    assert first.state is JobState.COMPLETED
    assert again.conflict and again.id == first.id
    assert len(RAN) == 1


# --- the pytest plugin ---------------------------------------------------------------------

USER_TESTS = """
import pytest
from jobrunner import Job, JobState, worker
from jobrunner.testing import all_enqueued, refute_enqueued

@worker(name="plugin.noop")
async def noop(job: Job) -> None:
    pass


@pytest.mark.asyncio
async def test_a_client_in_manual_mode(jobrunner_client):
    await jobrunner_client.insert(noop.new({"n": 1}))
    assert [job.args for job in await all_enqueued(jobrunner_client)] == [{"n": 1}]


@pytest.mark.asyncio
async def test_tables_are_emptied_between_tests(jobrunner_client):
    await refute_enqueued(jobrunner_client)


@pytest.mark.asyncio
async def test_an_inline_client(jobrunner_inline_client):
    job = await jobrunner_inline_client.insert(noop.new({}))
    assert job.state is JobState.COMPLETED


def test_without_the_fixtures():
    pass
"""


@pytest.fixture
async def plugin_dsn(make_database: Any, worker_suffix: str) -> str:
    """A database for a user's suite run by the plugin, with a job left by an earlier run."""
    url: str = await make_database(f"jobrunner_test_{worker_suffix}_plugin")
    conn = await asyncpg.connect(url)
    try:
        await _migrate.migrate(conn)
        await conn.execute("INSERT INTO jobrunner_jobs (worker) VALUES ('stale')")
    finally:
        await conn.close()
    return url


def run_user_suite(tmp_path: Path, dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\nfilterwarnings = error\n"
    )
    env = {**os.environ, "JOBRUNNER_TEST_DSN": dsn, "JOBRUNNER_LOG_LEVEL": "warning"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:hypothesispytest",
            *args,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_plugin_in_a_user_suite(plugin_dsn: str, tmp_path: Path) -> None:
    run = run_user_suite(tmp_path, plugin_dsn)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 passed" in run.stdout


def test_the_plugin_touches_no_database_unless_asked(tmp_path: Path) -> None:
    nowhere = "postgresql://postgres@127.0.0.1:1/none"
    run = run_user_suite(tmp_path, nowhere, "-k", "without_the_fixtures or manual_mode")
    assert "1 passed, 2 deselected, 1 error" in run.stdout, run.stdout + run.stderr
    assert "jobrunner_dsn: cannot connect to 'postgresql://postgres@127.0.0.1:1/none'" in run.stdout
    assert "Traceback" not in run.stdout and "_db.py" not in run.stdout
