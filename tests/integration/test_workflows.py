"""Workflows on the real PostgreSQL, run by an in-process daemon: dependencies, fan-out and
fan-in, results read by dependents, cancel and discard propagation, steps added while the
workflow runs, and the refusals at build time."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest

import jobrunner
from jobrunner import (
    Cancel,
    Discard,
    InvalidWorkflow,
    Job,
    JobNotFound,
    JobState,
    Record,
    Workflow,
    worker,
)
from tests.helpers import eventually
from tests.integration.test_daemon_outcomes import ended

QUEUE = "wf"


@worker(queue=QUEUE, name="tests.wf.produce")
async def produce(job: Job) -> Record:
    return Record({"from": job.args["name"], "n": job.args.get("n", 1)})


@worker(queue=QUEUE, name="tests.wf.total")
async def total(job: Job) -> Record:
    results = await jobrunner.current_client().dep_results(job)
    if await job.dep_results() != results:  # the job's own reader: the same statement
        return Discard(f"job.dep_results() read {await job.dep_results()!r}, not {results!r}")
    return Record({"deps": sorted(results), "sum": sum(r["n"] for r in results.values() if r)})


@worker(queue=QUEUE, name="tests.wf.fail")
async def fail(job: Job) -> Discard | Cancel:
    return Discard("bad input") if job.args["how"] == "discard" else Cancel("not needed")


@worker(queue=QUEUE, name="tests.wf.split")
async def split(job: Job) -> None:
    """Dynamic fan-out: adds one part per item and a merge step after them."""
    wf = Workflow.adding_to(job)
    for i in range(job.args["parts"]):
        wf.add(f"part-{i}", produce.new({"name": f"part-{i}", "n": i}), deps=["extract"])
    wf.add("merge", total.new({}), deps=[f"part-{i}" for i in range(job.args["parts"])])
    await jobrunner.current_client().insert_workflow(wf)


async def finished(client: jobrunner.Client, run: jobrunner.InsertedWorkflow) -> dict[str, Job]:
    """The steps once every one of them has finished."""

    async def check() -> dict[str, Job]:
        view = await client.get_workflow(run.id)
        assert view is not None
        steps = {s.step: s.job for s in view.steps}
        assert all(j.state in ("completed", "cancelled", "discarded") for j in steps.values()), {
            name: j.state for name, j in steps.items()
        }
        return steps

    return await eventually(check, 20)


def diamond() -> Workflow:
    wf = Workflow("diamond")
    wf.add("load", total.new({}), deps=["left", "right"])  # deps may come later
    wf.add("extract", produce.new({"name": "extract"}))
    wf.add("left", produce.new({"name": "left", "n": 2}), deps=["extract"])
    wf.add("right", produce.new({"name": "right", "n": 3}), deps=["extract"])
    return wf


async def test_a_diamond_runs_each_step_after_its_deps_and_reads_their_results(
    client: jobrunner.Client, make_runner
) -> None:
    run = await client.insert_workflow(diamond())
    assert run.jobs["extract"].state is JobState.AVAILABLE
    assert {run.jobs[s].state for s in ("left", "right", "load")} == {JobState.SCHEDULED}
    assert run.jobs["load"].workflow_id == run.id and run.jobs["load"].step == "load"
    async with make_runner(queues={QUEUE: 4}):
        steps = await finished(client, run)
    assert {name: j.state for name, j in steps.items()} == dict.fromkeys(steps, "completed")
    for name, deps in (("left", ["extract"]), ("right", ["extract"]), ("load", ["left", "right"])):
        for dep in deps:
            assert steps[name].attempted_at >= steps[dep].completed_at, (name, dep)
    load = await client.get_job(run.jobs["load"].id)
    assert load is not None and load.result == {"deps": ["left", "right"], "sum": 5}
    assert await client.dep_results(load) == {
        "left": {"from": "left", "n": 2},
        "right": {"from": "right", "n": 3},
    }


async def test_a_discarded_dep_cancels_its_dependents_down_the_graph_unless_ignored(
    client: jobrunner.Client, make_runner
) -> None:
    wf = Workflow("failing")
    wf.add("check", fail.new({"how": "discard"}))
    wf.add("publish", produce.new({"name": "publish"}), deps=["check"])
    wf.add("announce", produce.new({"name": "announce"}), deps=["publish"])
    wf.add("cleanup", produce.new({"name": "cleanup"}), deps=["check"], ignore_discarded=True)
    wf.add("report", total.new({}), deps=["announce", "cleanup"], ignore_cancelled=True)
    run = await client.insert_workflow(wf)
    async with make_runner(queues={QUEUE: 2}):
        steps = await finished(client, run)
    assert {n: j.state.value for n, j in steps.items()} == {
        "check": "discarded",
        "publish": "cancelled",
        "announce": "cancelled",
        "cleanup": "completed",
        "report": "completed",
    }
    assert steps["publish"].errors[-1].error == "dependency 'check' was discarded"
    assert steps["announce"].errors[-1].error == "dependency 'publish' was cancelled"
    assert steps["publish"].attempt == 0  # never ran


async def test_a_cancelled_dep_cancels_unless_the_step_ignores_cancelled(
    client: jobrunner.Client, make_runner
) -> None:
    wf = Workflow("cancelling")
    wf.add("maybe", fail.new({"how": "cancel"}))
    wf.add("strict", produce.new({"name": "strict"}), deps=["maybe"])
    wf.add("lenient", produce.new({"name": "lenient"}), deps=["maybe"], ignore_cancelled=True)
    run = await client.insert_workflow(wf)
    async with make_runner(queues={QUEUE: 2}):
        steps = await finished(client, run)
    assert steps["strict"].state is JobState.CANCELLED
    assert steps["lenient"].state is JobState.COMPLETED


async def test_a_step_adds_steps_to_its_running_workflow(
    client: jobrunner.Client, make_runner
) -> None:
    wf = Workflow("dynamic")
    wf.add("extract", produce.new({"name": "extract"}))
    wf.add("split", split.new({"parts": 4}), deps=["extract"])
    run = await client.insert_workflow(wf)
    async with make_runner(queues={QUEUE: 4}):

        async def merged() -> Job:
            view = await client.get_workflow(run.id)
            assert view is not None
            merge = {s.step: s.job for s in view.steps}.get("merge")
            assert merge is not None and merge.state is JobState.COMPLETED
            return merge

        merge = await eventually(merged, 20)
    assert merge.result == {"deps": ["part-0", "part-1", "part-2", "part-3"], "sum": 6}


async def test_job_dep_results_outside_an_attempt_names_the_client_method(
    client: jobrunner.Client,
) -> None:
    run = await client.insert_workflow(diamond())
    with pytest.raises(RuntimeError, match=r"elsewhere use client.dep_results\(job\)"):
        await run.jobs["load"].dep_results()


async def test_build_time_refusals_name_the_steps(client: jobrunner.Client) -> None:
    wf = Workflow("cyclic")
    wf.add("a", produce.new({"name": "a"}), deps=["c"])
    wf.add("b", produce.new({"name": "b"}), deps=["a"])
    wf.add("c", produce.new({"name": "c"}), deps=["b"])
    with pytest.raises(
        InvalidWorkflow, match="workflow 'cyclic' has a cycle: 'a' -> 'c' -> 'b' -> 'a'"
    ):
        await client.insert_workflow(wf)
    wf = Workflow("typo")
    wf.add("extract", produce.new({"name": "x"}))
    wf.add("load", produce.new({"name": "y"}), deps=["extarct"])
    with pytest.raises(
        InvalidWorkflow, match="step 'load' of workflow 'typo' depends on 'extarct'"
    ):
        await client.insert_workflow(wf)
    with pytest.raises(InvalidWorkflow, match="already has a step 'extract'"):
        wf.add("extract", produce.new({"name": "x"}))
    with pytest.raises(InvalidWorkflow, match="'self' -> 'self'"):
        looped = Workflow("self")
        looped.add("self", produce.new({"name": "s"}), deps=["self"])
        looped.check()
    assert await client.list_jobs() == []  # nothing was written


async def test_adding_to_a_workflow_refuses_unknown_and_taken_names(
    client: jobrunner.Client,
) -> None:
    run = await client.insert_workflow(diamond())
    more = Workflow.adding_to(run.id)
    more.add("audit", produce.new({"name": "audit"}), deps=["lodd"])
    with pytest.raises(InvalidWorkflow, match=f"workflow {run.id} has no step\\(s\\) 'lodd'"):
        await client.insert_workflow(more)
    again = Workflow.adding_to(run.id)
    again.add("left", produce.new({"name": "left"}))
    with pytest.raises(InvalidWorkflow, match="already has the step\\(s\\) 'left'"):
        await client.insert_workflow(again)
    missing = Workflow.adding_to(999_999)
    missing.add("x", produce.new({"name": "x"}))
    with pytest.raises(InvalidWorkflow, match="no workflow with id 999999"):
        await client.insert_workflow(missing)


async def test_a_step_added_after_its_dep_finished_settles_at_once(
    client: jobrunner.Client, make_runner
) -> None:
    wf = Workflow("late")
    wf.add("first", produce.new({"name": "first"}))
    wf.add("bad", fail.new({"how": "discard"}))
    run = await client.insert_workflow(wf)
    async with make_runner(queues={QUEUE: 2}):
        await finished(client, run)
        more = Workflow.adding_to(run.id)
        more.add("after-first", total.new({}), deps=["first"])
        more.add("after-bad", produce.new({"name": "x"}), deps=["bad"])
        added = await client.insert_workflow(more)
        assert added.jobs["after-first"].state is JobState.AVAILABLE
        assert added.jobs["after-bad"].state is JobState.CANCELLED
        job = await ended(client, added.jobs["after-first"].id, JobState.COMPLETED)
    assert job.result == {"deps": ["first"], "sum": 1}


async def test_cancelling_a_workflow_cancels_its_unfinished_steps(
    client: jobrunner.Client,
) -> None:
    run = await client.insert_workflow(diamond())
    cancelled = await client.cancel_workflow(run.id)
    assert sorted(cancelled) == sorted(j.id for j in run.jobs.values())
    view = await client.get_workflow(run.id)
    assert view is not None and {s.job.state for s in view.steps} == {JobState.CANCELLED}
    with pytest.raises(JobNotFound, match="no workflow with id 424242"):
        await client.cancel_workflow(424242)


async def test_a_waiting_step_is_not_released_by_a_retry_by_hand(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    run = await client.insert_workflow(diamond())
    load = await client.retry_job(run.jobs["load"].id)
    assert load.state is JobState.SCHEDULED
    view = await client.get_workflow(run.id)
    assert view is not None
    waiting = {s.step: s.waiting_on for s in view.steps}
    assert waiting == {
        "extract": (),
        "left": ("extract",),
        "right": ("extract",),
        "load": ("left", "right"),
    }


@pytest.fixture
def sync_client(dsn: str, db: asyncpg.Connection) -> Iterator[jobrunner.SyncClient]:
    with jobrunner.connect_sync(dsn) as client:
        yield client


async def test_the_sync_client_inserts_workflows_and_reads_dep_results(
    client: jobrunner.Client, sync_client: jobrunner.SyncClient, make_runner
) -> None:
    run = sync_client.insert_workflow(diamond())
    assert [j.step for j in run.jobs.values()] == ["load", "extract", "left", "right"]
    async with make_runner(queues={QUEUE: 4}):
        await finished(client, run)
    assert sync_client.dep_results(run.jobs["load"].id) == {
        "left": {"from": "left", "n": 2},
        "right": {"from": "right", "n": 3},
    }
    bad = Workflow("bad")
    bad.add("a", produce.new({}), deps=["b"])
    with pytest.raises(InvalidWorkflow, match="depends on 'b'"):
        sync_client.insert_workflow(bad)


async def test_the_sync_client_shows_and_cancels_a_workflow(
    client: jobrunner.Client, sync_client: jobrunner.SyncClient
) -> None:
    run = sync_client.insert_workflow(diamond())
    view = sync_client.get_workflow(run.id)
    assert view is not None and view == await client.get_workflow(run.id)
    assert view.name == "diamond"
    assert [s.step for s in view.steps] == ["extract", "left", "right", "load"]  # id order
    assert {s.step: s.waiting_on for s in view.steps}["load"] == ("left", "right")
    assert sync_client.get_workflow(424242) is None

    cancelled = sync_client.cancel_workflow(run.id)
    assert sorted(cancelled) == sorted(j.id for j in run.jobs.values())
    after = sync_client.get_workflow(run.id)
    assert after is not None and {s.job.state for s in after.steps} == {JobState.CANCELLED}
    assert sync_client.cancel_workflow(run.id) == []  # nothing left unfinished
    with pytest.raises(JobNotFound, match="no workflow with id 424242"):
        sync_client.cancel_workflow(424242)


async def test_drain_queue_runs_a_workflow_to_completion_in_order(
    client: jobrunner.Client,
) -> None:
    from jobrunner.testing import assert_enqueued, drain_queue, refute_enqueued

    run = await client.insert_workflow(diamond())
    await assert_enqueued(client, workflow=run.id, step="load", state="scheduled")
    await refute_enqueued(client, workflow=run.id, step="load", state="available")
    result = await drain_queue(client, QUEUE)
    assert result.completed == 4 and result.total == 4
    jobs = {name: await client.get_job(job.id) for name, job in run.jobs.items()}
    order = sorted(jobs, key=lambda name: jobs[name].completed_at)  # type: ignore[union-attr]
    assert order[0] == "extract" and order[-1] == "load"
    load = jobs["load"]
    assert load is not None and load.result == {"deps": ["left", "right"], "sum": 5}
    await refute_enqueued(client, workflow=run.id)


async def test_inline_testing_mode_runs_a_workflow_at_insert(dsn: str, db) -> None:
    async with jobrunner.connect(dsn, testing="inline") as inline:
        run = await inline.insert_workflow(diamond())
        load = await inline.get_job(run.jobs["load"].id)
    assert load is not None and load.state is JobState.COMPLETED
    assert load.result == {"deps": ["left", "right"], "sum": 5}


async def test_a_step_added_while_its_dep_finishes_is_released_whichever_commits_first(
    client: jobrunner.Client, dsn: str
) -> None:
    """The insert locks the existing deps it names: a dep's outcome waits for the insert to
    commit (and then settles the new step), or the insert waits for the outcome (and counts
    the dep as finished). Either way the new step is released once."""
    for outcome_first in (False, True):
        wf = Workflow("race")
        wf.add("a", produce.new({"name": "a"}))
        run = await client.insert_workflow(wf)
        a = run.jobs["a"].id
        adder = await asyncpg.connect(dsn)
        finisher = await asyncpg.connect(dsn)
        try:
            await finisher.execute("UPDATE jobrunner_jobs SET state = 'executing' WHERE id = $1", a)
            more = Workflow.adding_to(run.id)
            more.add("b", produce.new({"name": "b"}), deps=["a"])
            if outcome_first:
                tx = finisher.transaction()
                await tx.start()
                await finisher.execute(
                    "UPDATE jobrunner_jobs SET state = 'completed' WHERE id = $1", a
                )
                adding = asyncio.ensure_future(client.insert_workflow(more, conn=adder))
                await _blocked(client, "jobrunner_insert_workflow")
                await tx.commit()
                added = await adding
                assert added.jobs["b"].state is JobState.AVAILABLE
            else:
                tx = adder.transaction()
                await tx.start()
                added = await client.insert_workflow(more, conn=adder)
                assert added.jobs["b"].state is JobState.SCHEDULED
                finishing = asyncio.ensure_future(
                    finisher.execute(
                        "UPDATE jobrunner_jobs SET state = 'completed' WHERE id = $1", a
                    )
                )
                await _blocked(client, "UPDATE jobrunner_jobs SET state = 'completed'")
                await tx.commit()
                await finishing
            b = await client.get_job(added.jobs["b"].id)
            assert b is not None and b.state is JobState.AVAILABLE, outcome_first
        finally:
            await adder.close()
            await finisher.close()


async def _blocked(observer: jobrunner.Client, query_start: str) -> None:
    """Until a statement holding `query_start` waits on a lock (seen from outside any
    transaction: pg_stat_activity is a snapshot within one)."""

    async def waiting() -> bool:
        n = await observer.pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE '%' || $1 || '%'",
            query_start,
        )
        assert n == 1, n
        return True

    await eventually(waiting, 10)
