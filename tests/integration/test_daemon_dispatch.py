"""How the daemon finds and dispatches jobs: NOTIFY, polling, limits, order, several nodes."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

import jobrunner
from jobrunner import Job, JobState, worker
from jobrunner.core.config import QueueConfig
from jobrunner.db import queries as _queries
from jobrunner.engine.acker import Acker
from jobrunner.engine.producer import Producer
from tests.apps import sample
from tests.helpers import eventually

QUEUE = "dispatch"
LISTENER = "jobrunner.listener:"


@pytest.fixture
async def started(client) -> AsyncIterator[asyncio.Queue[Job]]:
    """Jobs of the `ping` worker, as they start."""
    queue: asyncio.Queue[Job] = asyncio.Queue()
    _started_queues.append(queue)
    yield queue
    _started_queues.remove(queue)


_started_queues: list[asyncio.Queue[Job]] = []


@worker(queue=QUEUE)
async def ping(job: Job) -> None:
    for queue in _started_queues:
        queue.put_nowait(job)


async def _fetched_once(runner: jobrunner.Runner) -> bool:
    return all(p.fetches >= 1 for p in runner.producers.values())


async def test_an_insert_wakes_the_producer_through_notify(client, make_runner, started) -> None:
    # The poll would only fire after 30 s: a start within the deadline can only be NOTIFY.
    async with make_runner(queues={QUEUE: 2}, poll_interval_s=30) as runner:
        await eventually(lambda: _fetched_once(runner))
        inserted = await client.insert(ping.new({}))
        ran = await asyncio.wait_for(started.get(), 10)
    assert ran.id == inserted.id


async def test_jobs_inserted_without_notify_are_found_by_the_poll(make_runner, started, db) -> None:
    async with make_runner(queues={QUEUE: 2}, poll_interval_s=0.2) as runner:
        await eventually(lambda: _fetched_once(runner))
        job_id = await db.fetchval(
            "INSERT INTO jobrunner_jobs (queue, worker) VALUES ($1, $2) RETURNING id",
            QUEUE,
            ping.name,
        )
        ran = await asyncio.wait_for(started.get(), 10)
    assert ran.id == job_id


async def test_the_listener_reconnects_after_being_terminated(
    client, make_runner, started, db
) -> None:
    async with make_runner(queues={QUEUE: 2}, poll_interval_s=30) as runner:
        old_pid = runner.notifier.backend_pid
        assert old_pid is not None
        name = await db.fetchval(
            "SELECT application_name FROM pg_stat_activity WHERE pid = $1", old_pid
        )
        assert name == LISTENER + runner.node
        assert await db.fetchval("SELECT pg_terminate_backend($1)", old_pid)

        async def reconnected() -> int:
            pid = runner.notifier.backend_pid
            assert pid is not None and pid != old_pid
            return pid

        new_pid = await eventually(reconnected, 15)
        assert runner.notifier.connects == 2
        assert (
            await db.fetchval(
                "SELECT application_name FROM pg_stat_activity WHERE pid = $1", new_pid
            )
            == LISTENER + runner.node
        )
        await eventually(lambda: _fetched_once(runner))
        inserted = await client.insert(ping.new({}))
        ran = await asyncio.wait_for(started.get(), 10)
        assert ran.id == inserted.id
        assert not runner.failed.is_set()


class Gauge:
    """Counts jobs running at once and keeps the highest count."""

    def __init__(self) -> None:
        self.now = 0
        self.max = 0

    async def hold(self, seconds: float) -> None:
        self.now += 1
        self.max = max(self.max, self.now)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.now -= 1


async def test_concurrency_never_exceeds_each_queue_limit(client, make_runner) -> None:
    gauges = {"narrow": Gauge(), "wide": Gauge()}

    @worker(queue="narrow")
    async def measured(job: Job) -> None:
        await gauges[job.queue].hold(0.05)

    jobs = [measured.new({"i": i}, queue=q) for q in gauges for i in range(40)]
    await client.insert_all(jobs)
    async with make_runner(queues={"narrow": 3, "wide": 7}) as runner:

        async def all_done() -> bool:
            n = await client.pool.fetchval(
                "SELECT count(*) FROM jobrunner_jobs WHERE state = 'completed'"
            )
            assert n == 80, n
            return True

        await eventually(all_done, 30)
        assert runner.producers["narrow"].fetches > 1
    assert (gauges["narrow"].max, gauges["wide"].max) == (3, 7)


async def test_jobs_run_in_priority_then_scheduled_time_order(client, make_runner) -> None:
    order: list[str] = []

    @worker(queue=QUEUE)
    async def ordered(job: Job) -> None:
        order.append(job.args["name"])

    now = datetime.now(UTC)
    await client.insert_all(
        [
            ordered.new({"name": "p5"}, priority=5),
            ordered.new({"name": "p1-newer"}, priority=1, scheduled_at=now - timedelta(seconds=10)),
            ordered.new({"name": "p9"}, priority=9),
            ordered.new({"name": "p0"}, priority=0),
            ordered.new({"name": "p1-older"}, priority=1, scheduled_at=now - timedelta(seconds=20)),
            ordered.new({"name": "p0-second"}, priority=0),
        ]
    )
    async with make_runner(queues={QUEUE: 1}):

        async def all_ran() -> bool:
            assert len(order) == 6, order
            return True

        await eventually(all_ran, 20)
    assert order == ["p0", "p0-second", "p1-older", "p1-newer", "p5", "p9"]


async def test_dispatch_cooldown_spaces_fetches(client, make_runner, db) -> None:
    @worker(queue=QUEUE)
    async def quick(job: Job) -> None:
        return None

    inserted = await client.insert_all([quick.new({"i": i}) for i in range(4)])
    async with make_runner(queues={QUEUE: QueueConfig(limit=1, dispatch_cooldown_s=0.3)}):

        async def all_done() -> bool:
            states = {(await client.get_job(j.id)).state for j in inserted}  # type: ignore[union-attr]
            assert states == {JobState.COMPLETED}, states
            return True

        await eventually(all_done, 20)
    times = await db.fetch("SELECT attempted_at FROM jobrunner_jobs ORDER BY attempted_at")
    gaps = [(b[0] - a[0]).total_seconds() for a, b in itertools.pairwise(times)]
    assert len(gaps) == 3 and min(gaps) >= 0.28, gaps


# --- subprocess daemons -----------------------------------------------------------------


async def _listener_pid(db: asyncpg.Connection, node: str) -> int | None:
    return await db.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1", LISTENER + node
    )


async def test_a_daemon_keeps_running_jobs_after_its_listener_is_killed(
    client, db, daemons
) -> None:
    daemon = daemons(queues="default:5", env={"JOBRUNNER_POLL_INTERVAL_S": "30"}).start()
    await daemon.wait_ready()
    first = await client.insert(sample.record_run.new({}))

    async def recorded(n: int) -> bool:
        assert await db.fetchval("SELECT count(*) FROM test_executions") == n
        return True

    await eventually(lambda: recorded(1), 10)  # NOTIFY: the poll is 30 s away
    old_pid = await _listener_pid(db, daemon.node)
    assert old_pid is not None
    assert await db.fetchval("SELECT pg_terminate_backend($1)", old_pid)

    async def reconnected() -> int:
        pid = await _listener_pid(db, daemon.node)
        assert pid is not None and pid != old_pid
        return pid

    await eventually(reconnected, 15)
    second = await client.insert(sample.record_run.new({}))
    await eventually(lambda: recorded(2), 10)
    assert await daemon.stop() == 0
    assert [e["event"] for e in daemon.events("notifier.reconnected")] == ["notifier.reconnected"]
    for job in (first, second):
        assert (await client.get_job(job.id)).state is JobState.COMPLETED  # type: ignore[union-attr]


async def test_two_daemons_never_run_the_same_job_twice(client, db, daemons) -> None:
    nodes = [daemons(queues="default:20").start() for _ in range(2)]
    for daemon in nodes:
        await daemon.wait_ready()
    jobs = await client.insert_all([sample.record_run.new({"i": i}) for i in range(2000)])

    async def all_recorded() -> bool:
        n = await db.fetchval("SELECT count(*) FROM test_executions")
        assert n >= 2000, n
        return True

    await eventually(all_recorded, 90, interval_s=0.2)
    for daemon in nodes:
        assert await daemon.stop() == 0
    twice = await db.fetch(
        "SELECT job_id, count(*) FROM test_executions GROUP BY job_id HAVING count(*) > 1"
    )
    assert twice == []
    assert await db.fetchval("SELECT count(DISTINCT job_id) FROM test_executions") == 2000
    assert set(await db.fetchval("SELECT array_agg(DISTINCT node) FROM test_executions")) <= {
        d.node for d in nodes
    }
    states = await db.fetch("SELECT state::text, count(*) FROM jobrunner_jobs GROUP BY 1")
    assert {r["state"]: r["count"] for r in states} == {"completed": len(jobs)}


# --- producer and runner lifecycle ------------------------------------------------------------


async def test_jobs_interrupted_before_their_task_began_go_back(client, started) -> None:
    acker = Acker(client.pool, "node-p")
    producer = Producer(QUEUE, QueueConfig(limit=3), client=client, node="node-p", acker=acker)
    await acker.start()
    try:
        inserted = await client.insert_all([ping.new({"i": i}) for i in range(3)])
        assert await producer.fetch_now() == 3  # the tasks have not run a step yet
        assert producer.running == 3
        producer.interrupt()
        await asyncio.wait_for(producer.stop(grace_s=30), 10)
        assert producer.running == 0
        await asyncio.wait_for(acker.wait_idle(), 10)
    finally:
        await acker.stop()
    assert started.empty()
    for job in inserted:
        after = await client.get_job(job.id)
        assert after is not None and after.state is JobState.AVAILABLE and after.attempt == 0


async def test_the_runner_embeds_in_an_application_loop(client, db) -> None:
    began: asyncio.Queue[int] = asyncio.Queue()

    @worker(queue="embedded")
    async def nap(job: Job) -> None:
        began.put_nowait(job.id)
        await asyncio.sleep(float(job.args["sleep"]))

    async with jobrunner.Runner(client, queues={"embedded": 2}) as runner:
        row = await db.fetchrow("SELECT queues FROM jobrunner_nodes WHERE name = $1", runner.node)
        assert json.loads(row["queues"]) == {
            "embedded": {"limit": 2, "paused": False, "running": 0}
        }
        quick = await client.insert(nap.new({"sleep": 0}))
        assert await asyncio.wait_for(began.get(), 10) == quick.id
        slow = await client.insert(nap.new({"sleep": 60}))
        assert await asyncio.wait_for(began.get(), 10) == slow.id
        await asyncio.wait_for(runner.stop(grace=0.2), 20)
        assert runner.stopped.is_set()
    for job_id, state, attempt in (
        (quick.id, JobState.COMPLETED, 1),
        (slow.id, JobState.AVAILABLE, 0),
    ):
        job = await client.get_job(job_id)
        assert job is not None and (job.state, job.attempt) == (state, attempt)
    assert await db.fetchval("SELECT count(*) FROM jobrunner_nodes") == 0


async def test_a_runner_that_fails_to_start_cleans_up(client, db, monkeypatch) -> None:
    async def broken_start(self: Producer) -> None:
        raise RuntimeError("cannot start")

    monkeypatch.setattr(Producer, "start", broken_start)
    runner = jobrunner.Runner(client, queues={QUEUE: 1})
    with pytest.raises(RuntimeError, match="cannot start"):
        await runner.start()
    assert runner.stopped.is_set() and runner.notifier.backend_pid is None
    assert await db.fetchval("SELECT count(*) FROM jobrunner_nodes") == 0

    async def listener_gone() -> bool:
        assert await _listener_pid(db, runner.node) is None
        return True

    await eventually(listener_gone)
    await runner.stop()  # idempotent


# --- acks carried by fetches ----------------------------------------------------------------


async def test_under_load_the_next_fetch_writes_the_acks(client, make_runner, db) -> None:
    jobs = await client.insert_all([ping.new({"i": i}) for i in range(200)])
    async with make_runner(queues={QUEUE: 5}) as runner:

        async def all_completed() -> bool:
            return await db.fetchval(
                "SELECT count(*) FROM jobrunner_jobs WHERE state = 'completed'"
            ) == len(jobs)

        await eventually(all_completed)
        producer = runner.producers[QUEUE]
        # A full queue keeps the producer fetching: the jobs that just ended are acked by
        # the statement that claims the next ones, not by statements of their own.
        assert producer.carried >= len(jobs) - 2 * producer.limit
        assert runner.acker.written == len(jobs)
    attempts = await db.fetchval("SELECT array_agg(DISTINCT attempt) FROM jobrunner_jobs")
    assert attempts == [1]


async def test_acks_wait_for_a_fetch_about_to_start_then_are_written_alone(client, db) -> None:
    acker = Acker(client.pool, "node-c")
    about_to_fetch = True
    acker.add_carrier(lambda: about_to_fetch)
    producer = Producer(QUEUE, QueueConfig(limit=1), client=client, node="node-c", acker=acker)
    await client.insert(ping.new({}))
    await acker.start()
    try:
        [job] = await _queries.fetch_jobs(client.pool, queue=QUEUE, demand=1, node="node-c")
        acker.push(_queries.Ack(job.id, job.attempt, "completed"))
        for _ in range(5):  # turns of the loop: the acker leaves the ack to the fetch
            await asyncio.sleep(0)
        assert acker.pending == 1
        assert (await client.get_job(job.id)).state is JobState.EXECUTING
        about_to_fetch = False  # the fetch did not happen after all
        acker.poke()
        await asyncio.wait_for(acker.wait_idle(), 10)
        assert (await client.get_job(job.id)).state is JobState.COMPLETED
    finally:
        await acker.stop()
        await producer.stop(grace_s=0)


async def test_acks_of_a_failed_fetch_are_written_later(client, db, monkeypatch) -> None:
    acker = Acker(client.pool, "node-f")
    producer = Producer(QUEUE, QueueConfig(limit=2), client=client, node="node-f", acker=acker)
    await client.insert(ping.new({}))
    [job] = await _queries.fetch_jobs(client.pool, queue=QUEUE, demand=1, node="node-f")
    acker.push(_queries.Ack(job.id, job.attempt, "completed"))
    real = _queries.ack_and_fetch_jobs

    async def lost(*args: object, **kwargs: object) -> object:
        # The statement reaches the database, then the reply is lost.
        await real(*args, **kwargs)  # type: ignore[arg-type]
        raise ConnectionResetError("connection lost")

    monkeypatch.setattr(_queries, "ack_and_fetch_jobs", lost)
    assert await producer.fetch_now() == 0
    assert acker.pending == 1  # back in the acker, first in line
    monkeypatch.setattr(_queries, "ack_and_fetch_jobs", real)
    await acker.start()
    try:
        await asyncio.wait_for(acker.wait_idle(), 10)
    finally:
        await acker.stop()
        await producer.stop(grace_s=0)
    done = await client.get_job(job.id)
    assert done is not None and done.state is JobState.COMPLETED and done.attempt == 1
