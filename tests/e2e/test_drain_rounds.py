"""`jobrunner drain` while things move: follow-up jobs across queues, a node stopped under
the drain, a job cancelled while the drain runs it, and the hints its errors give."""

from __future__ import annotations

import subprocess
import sys

import asyncpg

import jobrunner
from jobrunner import JobState
from tests.apps import control_workers, drain_workers
from tests.helpers import FAST_ENV, NO_CONFIG, ROOT, eventually, run_cli

APPS = ("tests.apps.control_workers", "tests.apps.drain_workers")
APP_FLAGS = ("--app", "tests.apps.control_workers", "--app", "tests.apps.drain_workers")


def cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, "--config", str(NO_CONFIG), dsn=dsn)


def drain_in_background(dsn: str, *args: str) -> subprocess.Popen[str]:
    """`jobrunner drain ARGS` started, not waited for."""
    env = {**__import__("os").environ, **FAST_ENV, "JOBRUNNER_DATABASE_URL": dsn}
    env.pop("JOBRUNNER_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "jobrunner", "drain", *args, "--config", str(NO_CONFIG)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def finished(proc: subprocess.Popen[str], timeout_s: float = 30) -> tuple[int, str, str]:
    async def done() -> bool:
        return proc.poll() is not None

    try:
        await eventually(done, timeout_s, interval_s=0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
    out, err = proc.communicate()
    return proc.returncode, out, err


async def test_a_follow_up_enqueued_by_a_node_into_a_queue_drained_here_runs(
    client: jobrunner.Client, db: asyncpg.Connection, daemons
) -> None:
    """One queue drains through a node, the other here: the node's job enqueues a failing
    follow-up into the other after that half could have ended. The drain runs it: exit 1."""
    await db.execute(control_workers.GATE_TABLE)
    await db.execute("TRUNCATE control_gate")
    node = daemons(queues="drain_nodes:2", app=APPS).start()
    await node.wait_ready()
    chained = await client.insert(drain_workers.chain.new({"fail": True}))

    async def running() -> bool:
        return (await client.get_job(chained.id)).state is JobState.EXECUTING

    await eventually(running)
    drain = drain_in_background(
        client.dsn, "drain_nodes", "drain_local", "--timeout", "30", *APP_FLAGS
    )

    async def woken() -> bool:
        return bool(
            await db.fetchval("SELECT count(*) FROM jobrunner_control WHERE command = 'drain'")
        )

    await eventually(woken, timeout_s=30)
    await db.execute("INSERT INTO control_gate VALUES (now())")
    code, out, err = await finished(drain, timeout_s=40)
    assert code == 1, (out, err)
    assert out.splitlines()[1] == ("completed 1, retried 0, failed 1, cancelled 0, snoozed 0")
    assert (await client.get_job(chained.id)).state is JobState.COMPLETED
    follow = await db.fetchrow(
        "SELECT state::text, attempt FROM jobrunner_jobs WHERE id <> $1", chained.id
    )
    assert tuple(follow) == ("discarded", 1)
    assert await node.stop() == 0


async def test_a_node_stopped_under_a_drain_leaves_its_jobs_to_the_drain(
    client: jobrunner.Client, db: asyncpg.Connection, daemons
) -> None:
    await db.execute(control_workers.GATE_TABLE)
    await db.execute("TRUNCATE control_gate")
    node = daemons(queues="default:1", app=APPS, env={"JOBRUNNER_SHUTDOWN_GRACE_S": "0.5"}).start()
    await node.wait_ready()
    gated = await client.insert(control_workers.gate.new({}))

    async def running() -> bool:
        return (await client.get_job(gated.id)).state is JobState.EXECUTING

    await eventually(running)
    others = await client.insert_all([control_workers.cancel.new({}) for _ in range(2)])
    drain = drain_in_background(client.dsn, "default", "--timeout", "60", *APP_FLAGS)

    async def woken() -> bool:
        return bool(
            await db.fetchval("SELECT count(*) FROM jobrunner_control WHERE command = 'drain'")
        )

    await eventually(woken, timeout_s=30)
    assert await node.stop() == 0  # the gated job is interrupted: back to available
    await db.execute("INSERT INTO control_gate VALUES (now())")
    code, out, err = await finished(drain, timeout_s=40)
    assert code == 0, (out, err)
    assert "'default' in this process" in out.splitlines()[0]
    assert (await client.get_job(gated.id)).state is JobState.COMPLETED
    assert [(await client.get_job(j.id)).state for j in others] == [JobState.CANCELLED] * 2


async def test_a_job_cancelled_while_a_drain_runs_it_stops_and_counts_cancelled(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    await db.execute(control_workers.GATE_TABLE)
    await db.execute("TRUNCATE control_gate")
    gated = await client.insert(control_workers.gate.new({}))
    drain = drain_in_background(client.dsn, "default", "--timeout", "60", *APP_FLAGS)

    async def running() -> bool:
        return (await client.get_job(gated.id)).state is JobState.EXECUTING

    await eventually(running, timeout_s=30)
    cancelled = cli(client.dsn, "jobs", "cancel", str(gated.id))
    assert cancelled.returncode == 0, cancelled.stderr
    code, out, err = await finished(drain, timeout_s=20)
    assert code == 0, (out, err)
    assert out.splitlines()[1] == "completed 0, retried 0, failed 0, cancelled 1, snoozed 0"
    assert (await client.get_job(gated.id)).state is JobState.CANCELLED


async def test_every_hint_of_a_drain_error_works_as_written(client: jobrunner.Client) -> None:
    refused = cli(client.dsn, "drain", "nowhere")
    assert refused.returncode == 2
    assert "pass --force to use it anyway" in refused.stderr
    forced = cli(client.dsn, "drain", "nowhere", "--force")
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.splitlines() == [
        "drained 'nowhere' in this process",
        "completed 0, retried 0, failed 0, cancelled 0, snoozed 0",
    ]
