"""`jobrunner drain` as CI runs it: with and without live daemons, its summary and exit code."""

from __future__ import annotations

import asyncio
import json
import subprocess

import jobrunner
from jobrunner import JobState
from tests.apps import control_workers, sample
from tests.helpers import NO_CONFIG, eventually, run_cli

APPS = ("tests.apps.sample", "tests.apps.control_workers")
APP_FLAGS = ("--app", "tests.apps.sample", "--app", "tests.apps.control_workers")


def cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, "--config", str(NO_CONFIG), dsn=dsn)


async def states(client: jobrunner.Client, jobs: list[jobrunner.Job]) -> list[JobState]:
    return [(await client.get_job(j.id)).state for j in jobs]


async def test_drain_runs_jobs_here_when_no_node_serves_the_queue(client, db) -> None:
    jobs = await client.insert_all([sample.record_run.new({"i": i}) for i in range(3)])
    jobs += await client.insert_all(
        [control_workers.cancel.new({}), control_workers.snooze.new({})]
    )
    later = await client.insert(sample.noop.new({}, schedule_in=3600))
    result = cli(client.dsn, "drain", *APP_FLAGS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "drained 'default' in this process",
        "completed 3, retried 0, failed 0, cancelled 1, snoozed 1",
    ]
    assert await states(client, jobs) == [JobState.COMPLETED] * 3 + [
        JobState.CANCELLED,
        JobState.SCHEDULED,
    ]
    assert (await client.get_job(later.id)).state is JobState.SCHEDULED
    assert await db.fetchval("SELECT count(*) FROM test_executions") == 3
    assert await db.fetchval("SELECT count(*) FROM jobrunner_nodes") == 0


async def test_drain_exits_1_when_a_job_fails(client, db) -> None:
    ok = await client.insert_all([sample.noop.new({}), sample.noop.new({})])
    failing = await client.insert(sample.fail.new({"message": "boom"}))
    first = cli(client.dsn, "drain", "default", *APP_FLAGS)
    assert first.returncode == 1
    assert first.stdout.splitlines()[1] == (
        "completed 2, retried 1, failed 0, cancelled 0, snoozed 0"
    )
    assert first.stderr.splitlines()[-1] == (
        "error: 1 job failed and will be retried later; see 'jobrunner jobs list --state "
        "retryable', or drain --with-scheduled"
    )
    assert "RuntimeError: boom" in first.stderr  # the failure is logged for the CI log
    assert await states(client, ok) == [JobState.COMPLETED] * 2
    assert (await client.get_job(failing.id)).state is JobState.RETRYABLE

    # --with-scheduled retries it now, until it runs out of attempts (3).
    second = cli(client.dsn, "drain", "default", "--with-scheduled", "--json", *APP_FLAGS)
    assert second.returncode == 1
    assert json.loads(second.stdout) == {
        "completed": 0,
        "retried": 1,
        "failed": 1,
        "cancelled": 0,
        "snoozed": 0,
        "ok": False,
        "by_nodes": {},
        "here": ["default"],
    }
    assert second.stderr.splitlines()[-1] == (
        "error: 1 job failed; see 'jobrunner jobs list --state discarded'"
    )
    job = await client.get_job(failing.id)
    assert (job.state, job.attempt, len(job.errors)) == (JobState.DISCARDED, 3, 3)


async def test_drain_goes_through_live_daemons(client, db, daemons) -> None:
    nodes = [
        daemons(queues="default:2", node=name, app=APPS).start() for name in ("drain-a", "drain-b")
    ]
    for daemon in nodes:
        await daemon.wait_ready()
    # Scheduled for later, so that only the drain makes them run (on the daemons).
    good = await client.insert_all(
        [sample.record_run.new({"i": i}, schedule_in=3600) for i in range(4)]
    )
    snoozing = await client.insert(control_workers.snooze.new({}, schedule_in=3600))
    result = cli(client.dsn, "drain", "--with-scheduled")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "drained 'default' through drain-a, drain-b",
        "completed 4, retried 0, failed 0, cancelled 0, snoozed 1",
    ]
    assert await states(client, good) == [JobState.COMPLETED] * 4
    snoozed = await client.get_job(snoozing.id)
    assert snoozed.state is JobState.SCHEDULED and snoozed.attempted_by[0] in ("drain-a", "drain-b")
    ran_on = {r["node"] for r in await db.fetch("SELECT node FROM test_executions")}
    assert ran_on <= {"drain-a", "drain-b"} and ran_on

    failing = await client.insert(sample.fail.new({}, schedule_in=3600))
    done = await client.insert(sample.noop.new({}, schedule_in=3600))
    result = cli(client.dsn, "drain", "default", "--with-scheduled")
    assert result.returncode == 1
    # The snoozing job is scheduled again: this drain runs it once more.
    assert result.stdout.splitlines()[1] == (
        "completed 1, retried 2, failed 1, cancelled 0, snoozed 1"
    )
    assert result.stderr == "error: 1 job failed; see 'jobrunner jobs list --state discarded'\n"
    assert (await client.get_job(failing.id)).state is JobState.DISCARDED
    assert (await client.get_job(done.id)).state is JobState.COMPLETED
    applied = await db.fetchval(
        "SELECT count(*) FROM jobrunner_control_applied a JOIN "
        "jobrunner_control c ON c.id = a.control_id "
        "WHERE c.command = 'drain'"
    )
    assert applied == 4  # two drains, each applied by both nodes
    for daemon in nodes:
        assert await daemon.stop() == 0


async def test_drain_waits_for_the_jobs_daemons_run(client, db, daemons) -> None:
    await db.execute(control_workers.GATE_TABLE)
    await db.execute("TRUNCATE control_gate")
    daemon = daemons(queues="default:1", node="gated", app=APPS).start()
    await daemon.wait_ready()
    # The gate job holds the node's only slot, so the others wait for the drain to begin.
    held = await client.insert(control_workers.gate.new({}))

    async def executing() -> bool:
        return (await client.get_job(held.id)).state is JobState.EXECUTING

    await eventually(executing)
    queued = await client.insert_all([sample.record_run.new({"i": i}) for i in range(3)])
    failing = await client.insert(sample.fail.new({}))
    drain = asyncio.create_task(asyncio.to_thread(cli, client.dsn, "drain", "default"))

    async def drain_began() -> bool:
        return bool(
            await db.fetchval("SELECT count(*) FROM jobrunner_control WHERE command = 'drain'")
        )

    await eventually(drain_began, 30)
    await db.execute("INSERT INTO control_gate VALUES (now())")
    result = await drain
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        "drained 'default' through gated",
        "completed 4, retried 1, failed 0, cancelled 0, snoozed 0",
    ]
    assert result.stderr.splitlines()[-1].startswith("error: 1 job failed and will be retried")
    assert await states(client, [held, *queued]) == [JobState.COMPLETED] * 4
    assert (await client.get_job(failing.id)).state is JobState.RETRYABLE
    assert await daemon.stop() == 0


async def test_drain_timeout_and_bad_input(client, db) -> None:
    slow = await client.insert(control_workers.slow.new({"sleep": 60}))
    await db.execute(control_workers.RUNS_TABLE)
    result = cli(client.dsn, "drain", "default", "--timeout", "2", *APP_FLAGS)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "error: drain timed out after 2s (jobs left: 1 in 'default'); raise --timeout or "
        "check the nodes with 'jobrunner status'"
    )
    job = await client.get_job(slow.id)
    assert (job.state, job.attempt) == (JobState.AVAILABLE, 0)  # given back, not counted

    unknown = cli(client.dsn, "drain", "deafult", *APP_FLAGS)
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: unknown queue 'deafult'")
    no_app = cli(client.dsn, "drain", "default")
    assert no_app.returncode == 2
    assert no_app.stderr == (
        "error: no live node serves 'default', and this process knows no worker named "
        "'control.slow'; pass --app MODULE that defines them, or start a node for the queue\n"
    )
    assert (await client.get_job(slow.id)).attempt == 0
