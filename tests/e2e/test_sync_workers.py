"""Sync workers (a plain `def`) under `jobrunner start`: threads, the loop, shutdown, kill -9."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg
import pytest

import jobrunner
from jobrunner import JobState
from tests.apps import sync_workers
from tests.helpers import eventually, run_cli

APPS = ("tests.apps.sync_workers",)


@pytest.fixture
async def events(db: asyncpg.Connection) -> AsyncIterator[None]:
    """The `sync_events` table the workers of tests.apps.sync_workers write to, empty."""
    await db.execute(sync_workers.EVENTS_TABLE)
    await db.execute("TRUNCATE sync_events")
    yield


async def count(db: asyncpg.Connection, event: str, n: int, timeout_s: float = 20) -> None:
    """Until exactly `n` events `event` were noted."""

    async def check() -> bool:
        found = await db.fetchval("SELECT count(*) FROM sync_events WHERE event = $1", event)
        assert found == n, f"{event}: {found} != {n}"
        return True

    await eventually(check, timeout_s)


async def times(db: asyncpg.Connection, event: str) -> dict[int, datetime]:
    rows = await db.fetch("SELECT job_id, at FROM sync_events WHERE event = $1", event)
    return {row["job_id"]: row["at"] for row in rows}


async def state(client: jobrunner.Client, job_id: int) -> jobrunner.Job:
    job = await client.get_job(job_id)
    assert job is not None
    return job


async def completed(client: jobrunner.Client, jobs: list[jobrunner.Job]) -> None:
    """Until every one of `jobs` is completed (its ack follows its last event)."""

    async def check() -> bool:
        for job in jobs:
            found = await state(client, job.id)
            assert found.state is JobState.COMPLETED, f"job {job.id} is {found.state}"
        return True

    await eventually(check, timeout_s=10)


async def test_sync_jobs_overlap_up_to_the_queue_limit(client, db, daemons, events) -> None:
    daemon = daemons(queues="sync:3", app=APPS, args=["--threads", "10"]).start()
    await daemon.wait_ready()
    jobs = await client.insert_all([sync_workers.block.new({"sleep": 1}) for _ in range(7)])
    await count(db, "end", 7, timeout_s=30)
    starts, ends = await times(db, "start"), await times(db, "end")
    most = max(sum(1 for j in starts if starts[j] <= at < ends[j]) for at in starts.values())
    assert most == 3, f"at most {most} ran at once, expected the queue's limit 3"
    # The pool may start a fresh thread when the next job is handed over before the last
    # one's thread is counted idle again (ThreadPoolExecutor's own bookkeeping); its bound
    # is --threads.
    threads = await db.fetchval("SELECT count(DISTINCT thread) FROM sync_events")
    assert 1 < threads <= 10
    assert all(name.startswith("jobrunner-sync-") for name in await _threads(db))
    await completed(client, jobs)


async def test_threads_bound_sync_jobs_across_queue_limits(client, db, daemons, events) -> None:
    daemon = daemons(queues="sync:3", app=APPS, args=["--threads", "1"]).start()
    await daemon.wait_ready()
    jobs = await client.insert_all([sync_workers.block.new({"sleep": 0.3}) for _ in range(3)])
    await count(db, "end", 3, timeout_s=30)
    starts, ends = await times(db, "start"), await times(db, "end")
    assert all(
        not (starts[a] < ends[b] and starts[b] < ends[a]) for a in starts for b in starts if a < b
    ), "one thread: the jobs must not overlap"
    assert await _threads(db) == ["jobrunner-sync-0"]
    await completed(client, jobs)


def test_a_bad_threads_flag_is_one_line(dsn: str) -> None:
    found = run_cli("start", "--threads", "0", "--queues", "sync:1", dsn=dsn)
    assert found.returncode == 2 and "Traceback" not in found.stderr
    assert found.stderr.strip() == "error: threads must be an integer >= 1, got 0"


async def _threads(db: asyncpg.Connection) -> list[str]:
    rows = await db.fetch("SELECT DISTINCT thread FROM sync_events WHERE thread IS NOT NULL")
    return [row["thread"] for row in rows]


async def test_blocked_threads_do_not_delay_another_queue(client, db, daemons, events) -> None:
    """While every sync job blocks its thread, an async job of another queue on the same
    daemon starts long before any of them ends (a blocked loop would start it after)."""
    daemon = daemons(queues="sync:3,async:2", app=APPS).start()
    await daemon.wait_ready()
    blocking = await client.insert_all([sync_workers.block.new({"sleep": 6}) for _ in range(3)])
    await count(db, "start", 3)
    pinged = await client.insert(sync_workers.ping.new({}))
    await count(db, "start", 4)
    started = (await times(db, "start"))[pinged.id]
    waited = (started - (await state(client, pinged.id)).inserted_at).total_seconds()
    assert waited < 2.0, f"the async job waited {waited:.2f}s for the loop"
    assert not await times(db, "end"), "the async job should start while the threads block"
    await count(db, "end", 3, timeout_s=30)
    assert min((await times(db, "end")).values()) > started
    await completed(client, blocking)


async def test_sigterm_waits_for_running_threads(client, db, daemons, events) -> None:
    daemon = daemons(queues="sync:3", app=APPS).start()  # grace 10 s
    await daemon.wait_ready()
    jobs = await client.insert_all([sync_workers.block.new({"sleep": 2}) for _ in range(3)])
    await count(db, "start", 3)
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(30) == 0
    await count(db, "end", 3, timeout_s=0)
    for job in jobs:
        assert (await state(client, job.id)).state is JobState.COMPLETED


async def test_a_thread_past_the_grace_goes_back_and_does_not_hold_the_exit(
    client, db, daemons, events
) -> None:
    daemon = daemons(queues="sync:2", app=APPS, env={"JOBRUNNER_SHUTDOWN_GRACE_S": "1"}).start()
    await daemon.wait_ready()
    job = await client.insert(sync_workers.block.new({"sleep": 120}))
    await count(db, "start", 1)
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(30) == 0  # the thread would block it for two minutes
    back = await state(client, job.id)
    assert back.state is JobState.AVAILABLE and back.attempt == 0
    await count(db, "end", 0, timeout_s=0)


async def test_kill_9_with_sync_jobs_running_loses_nothing(client, db, daemons, events) -> None:
    victim = daemons(queues="sync:4", app=APPS).start()
    await victim.wait_ready()
    jobs = await client.insert_all([sync_workers.block.new({"sleep": 60}) for _ in range(4)])
    await count(db, "start", 4)
    victim.kill()
    heir = daemons(queues="sync:4", app=APPS).start()
    await heir.wait_ready()

    async def all_completed() -> bool:
        for job in jobs:
            found = await state(client, job.id)
            assert found.state is JobState.COMPLETED, f"job {job.id} is {found.state}"
            assert found.attempt == 2 and found.attempted_by[0] == heir.node
        return True

    await eventually(all_completed, timeout_s=40)
    await count(db, "end", 4, timeout_s=0)


async def test_a_timed_out_sync_job_is_retried_and_its_late_return_is_ignored(
    client, db, daemons, events
) -> None:
    daemon = daemons(queues="sync:2", app=APPS).start()
    await daemon.wait_ready()
    job = await client.insert(sync_workers.Late.new({"sleep": 3}))  # type: ignore[attr-defined]

    async def ended() -> jobrunner.Job:
        found = await state(client, job.id)
        assert found.state is JobState.CANCELLED, found.state
        return found

    done = await eventually(ended, timeout_s=40)
    await count(db, "late-return", 1, timeout_s=0)  # attempt 2 ended only after it
    assert done.attempt == 2
    assert [e.attempt for e in done.errors] == [1, 2]
    assert "JobTimeout: job timed out after 1s" in done.errors[0].error
    assert done.errors[1].error == "second attempt"
    outcomes = [(e["attempt"], e["outcome"]) for e in daemon.events("job.exception")]
    outcomes += [(e["attempt"], e["outcome"]) for e in daemon.events("job.stop")]
    assert sorted(outcomes) == [(1, "failure"), (2, "cancelled")]


async def test_a_sync_job_enqueues_a_follow_up_from_its_thread(client, db, daemons, events) -> None:
    daemon = daemons(queues="sync:1,async:1", app=APPS).start()
    await daemon.wait_ready()
    job = await client.insert(sync_workers.follow_up.new({}))

    async def inserted() -> int:
        row = await db.fetchval(
            "SELECT event FROM sync_events WHERE job_id = $1 AND event LIKE 'inserted %'", job.id
        )
        assert row is not None
        return int(row.split()[1])

    follow_up = await eventually(inserted, timeout_s=20)

    async def ran() -> bool:
        found = await state(client, follow_up)
        assert found.state is JobState.COMPLETED and found.args == {"from": job.id}
        return True

    await eventually(ran, timeout_s=20)
