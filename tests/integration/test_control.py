"""The control channel in-process: commands reach runners' producers once, persist, survive
restarts, and the client's control methods say which nodes applied them."""

from __future__ import annotations

import json

import asyncpg
import pytest

from jobrunner import Job, JobState, worker
from jobrunner.ops.commands import UnknownTarget
from tests.helpers import eventually


@worker(queue="default", name="control.it.noop")
async def noop(job: Job) -> None:
    """Does nothing."""


async def node_queues(db: asyncpg.Connection, node: str) -> dict:
    return json.loads(await db.fetchval("SELECT queues FROM jobrunner_nodes WHERE name = $1", node))


async def test_pause_reaches_every_runner_and_is_recorded_once(client, db, make_runner) -> None:
    async with make_runner(node="a") as a, make_runner(node="b") as b:
        result = await client.pause_queue("default")

        assert result.ok and result.command == "pause" and result.persisted
        assert result.targets == ("a", "b") and sorted(result.applied) == ["a", "b"]
        assert result.applied["a"] == {"paused": True, "limit": 10, "running": 0}
        assert a.producers["default"].paused and b.producers["default"].paused
        # The node rows show it as soon as the command returns: no heartbeat to wait for.
        assert (await node_queues(db, "a"))["default"]["paused"] is True
        assert await db.fetchval("SELECT count(*) FROM jobrunner_control_applied") == 2
        assert await db.fetchval("SELECT paused FROM jobrunner_queues WHERE name = 'default'")
        issued_by = await db.fetchval("SELECT issued_by FROM jobrunner_control")
        assert "@" in issued_by

        await client.insert(noop.new({}))
        resumed = await client.resume_queue("default")
        assert resumed.ok and sorted(resumed.applied) == ["a", "b"]
        assert not a.producers["default"].paused and not b.producers["default"].paused

        async def done() -> bool:
            return await db.fetchval("SELECT state::text FROM jobrunner_jobs") == "completed"

        await eventually(done)
        controller = a._services[0]
        assert [c.command for c in controller.applied] == ["pause", "resume"]


async def test_paused_runner_fetches_nothing_until_resumed(client, db, make_runner) -> None:
    async with make_runner(node="a") as a:
        await client.pause_queue("default")
        job = await client.insert(noop.new({}))
        fetches = a.producers["default"].fetches
        # Woken by the insert, the producer looks but does not fetch while paused.
        a.producers["default"].wake()
        assert not a.producers["default"]._launch()
        assert a.producers["default"].fetches == fetches
        assert (await client.get_job(job.id)).state is JobState.AVAILABLE
        await client.resume_queue("default")

        async def completed() -> bool:
            return (await client.get_job(job.id)).state is JobState.COMPLETED

        await eventually(completed)


async def test_runner_started_after_a_pause_stays_paused(client, db, make_runner) -> None:
    result = await client.pause_queue("default")
    assert result.targets == () and result.persisted and result.ok
    await client.scale_queue("default", 3)
    async with make_runner(node="late") as late:
        assert late.producers["default"].paused
        assert late.producers["default"].limit == 3
        # Loaded as state, not applied as commands: the node came after them.
        assert late._services[0].applied == []
        assert (await node_queues(db, "late"))["default"] == {
            "limit": 3,
            "paused": True,
            "running": 0,
        }
        resumed = await client.resume_queue("default")
        assert resumed.applied == {"late": {"paused": False, "limit": 3, "running": 0}}


async def test_a_reset_limit_goes_back_to_each_nodes_own(client, db, make_runner) -> None:
    async with make_runner(node="a", queues={"default": 4}) as a:
        await client.scale_queue("default", 7)
        assert a.producers["default"].limit == 7
        async with make_runner(node="b", queues={"default": 2}) as b:
            assert b.producers["default"].limit == 7  # the persisted limit
            b.producers["default"].scale(5)  # a node-targeted scale, say
            result = await client.reset_queue_limit("default")
            assert result.persisted and sorted(result.applied) == ["a", "b"]
            assert result.applied["b"]["limit"] == 2
            assert (a.producers["default"].limit, b.producers["default"].limit) == (4, 2)
        assert await db.fetchval('SELECT "limit" FROM jobrunner_queues') is None
    async with make_runner(node="late", queues={"default": 3}) as late:
        assert late.producers["default"].limit == 3
    # One node only: back to its own limit, and the persisted state is left alone.
    await client.scale_queue("default", 6)
    async with make_runner(node="c", queues={"default": 1}) as c:
        assert c.producers["default"].limit == 6
        only = await client.reset_queue_limit("default", "c")
        assert not only.persisted and c.producers["default"].limit == 1
    assert await db.fetchval('SELECT "limit" FROM jobrunner_queues') == 6


async def test_node_targeted_commands_are_not_persisted(client, db, make_runner) -> None:
    async with make_runner(node="a") as a, make_runner(node="b") as b:
        result = await client.scale_queue("default", 2, node="b")
        assert result.targets == ("b",) and list(result.applied) == ["b"]
        assert not result.persisted
        assert (a.producers["default"].limit, b.producers["default"].limit) == (10, 2)
        paused = await client.pause_queue("default", "a")
        assert list(paused.applied) == ["a"]
        assert a.producers["default"].paused and not b.producers["default"].paused
    assert await db.fetchval("SELECT count(*) FROM jobrunner_queues") == 0


async def test_a_command_without_notify_is_applied_by_polling(client, db, make_runner) -> None:
    async with make_runner(node="a", control_poll_interval_s=0.2) as a:
        await db.execute(
            "INSERT INTO jobrunner_control (command, queue, payload, issued_by) "
            "VALUES ('scale', 'default', '{\"limit\": 4}', 'test@host')"
        )

        async def applied() -> bool:
            return await db.fetchval("SELECT node FROM jobrunner_control_applied") == "a"

        await eventually(applied)
        assert a.producers["default"].limit == 4


async def test_only_nodes_serving_the_queue_are_waited_for(client, db, make_runner) -> None:
    async with make_runner({"default": 1}, node="a"), make_runner({"emails": 1}, node="b") as b:
        result = await client.pause_queue("emails")
        assert result.targets == ("b",) and list(result.applied) == ["b"]
        assert b.producers["emails"].paused


async def test_stop_node_asks_the_runner_to_stop(client, make_runner) -> None:
    async with make_runner(node="a") as a, make_runner(node="b") as b:
        result = await client.stop_node("a", grace_s=3)
        assert result.ok and result.applied == {"a": {"stopping": True, "grace_s": 3.0}}
        assert a.stop_requested.is_set() and a.requested_grace_s == 3.0
        assert not b.stop_requested.is_set()


async def test_commands_wait_only_for_the_timeout(client, db, make_runner) -> None:
    async with make_runner(node="a") as a:
        await a._services[0].stop()  # a live node that does not apply commands
        result = await client.pause_queue("default", timeout_s=0.3)
        assert not result.ok and result.missing == ("a",) and result.applied == {}


async def test_bad_targets_are_refused(client, make_runner) -> None:
    async with make_runner(node="a"):
        with pytest.raises(UnknownTarget, match=r"unknown queue 'nope': no node serves it"):
            await client.pause_queue("nope")
        with pytest.raises(UnknownTarget, match=r"unknown node 'z'.*live nodes: a"):
            await client.pause_queue("default", "z")
        with pytest.raises(UnknownTarget, match="node 'a' does not serve queue 'emails'"):
            await client.resume_queue("emails", "a")
        with pytest.raises(ValueError, match="limit must be a whole number from 1 to 100000"):
            await client.scale_queue("default", 0)
        with pytest.raises(ValueError, match="grace must be seconds >= 0"):
            await client.stop_node("a", grace_s=-1)
        forced = await client.pause_queue("nope", force=True)
        assert forced.targets == () and forced.persisted


async def test_list_retry_and_status(client, db, make_runner) -> None:
    await client.pause_queue("default")
    jobs = await client.insert_all([noop.new({"i": i}) for i in range(3)])
    await db.execute(
        "UPDATE jobrunner_jobs SET state = 'discarded', discarded_at = now() WHERE id = $1",
        jobs[0].id,
    )
    listed = await client.list_jobs(state="available")
    assert [j.id for j in listed] == [jobs[2].id, jobs[1].id]
    assert [j.id for j in await client.list_jobs(limit=1)] == [jobs[2].id]
    with pytest.raises(ValueError, match="unknown job state 'done'"):
        await client.list_jobs(state="done")
    assert await client.retry_jobs(state="discarded", queue="default") == [jobs[0].id]
    status = await client.status()
    (queue,) = status.queues
    assert queue.name == "default" and queue.paused and queue.nodes == ()
    assert queue.jobs["available"] == 3 and sum(queue.jobs.values()) == 3


async def test_nodes_without_queues_are_not_waited_for(client, db, make_runner) -> None:
    # A drain or an inline test process holds a node row serving no queue: no control loop.
    await db.execute(
        "INSERT INTO jobrunner_nodes (name, host, pid, queues, expires_at) "
        "VALUES ('drainer', 'h', 1, '{}', now() + interval '1 minute')"
    )
    async with make_runner(node="a") as a:
        with pytest.raises(UnknownTarget, match=r"unknown node 'drainer'.*live nodes: a\)"):
            await client.stop_node("drainer")
        result = await client.stop_node(timeout_s=3)
        assert result.ok and result.targets == ("a",)
        assert a.stop_requested.is_set()
