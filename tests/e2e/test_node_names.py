"""Node names as deployments use them: one live process per `--node`, never a double run."""

from __future__ import annotations

import asyncpg

import jobrunner
from jobrunner import JobState
from tests.apps import control_workers
from tests.helpers import eventually

APPS = ("tests.apps.sample", "tests.apps.control_workers")


async def test_a_second_live_process_with_the_same_node_is_refused_and_runs_nothing(
    daemons, client: jobrunner.Client, db: asyncpg.Connection
):
    """Two pods given one name: the second must not take the first's running job over."""
    await db.execute(control_workers.GATE_TABLE)
    await db.execute("TRUNCATE control_gate")
    first = daemons(queues="default:2", node="worker-0", app=APPS).start()
    await first.wait_ready()
    job = await client.insert(control_workers.gate.new({}))

    async def started() -> bool:
        return (await client.get_job(job.id)).state is JobState.EXECUTING

    await eventually(started)

    second = daemons(queues="default:2", node="worker-0", app=APPS).start()
    assert await second.wait(timeout_s=30) == 1
    assert "node 'worker-0' is already running in another live process" in second.output()
    assert "Traceback" not in second.output()

    running = await client.get_job(job.id)
    assert running.state is JobState.EXECUTING and running.attempt == 1
    await db.execute("INSERT INTO control_gate VALUES (now())")

    async def completed() -> bool:
        return (await client.get_job(job.id)).state is JobState.COMPLETED

    await eventually(completed, timeout_s=30)
    assert (await client.get_job(job.id)).attempt == 1
    assert first.events("node.rescued_leftovers") == []
    assert await first.stop() == 0


async def test_a_process_restarted_under_its_name_after_a_clean_stop_starts(
    daemons, db: asyncpg.Connection
):
    """The name is free again once its process stopped: a restart is not refused."""
    first = daemons(queues="default:2", node="worker-1").start()
    await first.wait_ready()
    assert await first.stop() == 0
    again = daemons(queues="default:2", node="worker-1").start()
    await again.wait_ready()
    assert await again.stop() == 0
