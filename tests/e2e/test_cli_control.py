"""pause, resume, scale, stop and cancel from the command line, against daemons in subprocesses."""

from __future__ import annotations

import json
import signal
import subprocess

import asyncpg
import pytest

import jobrunner
from jobrunner import JobState
from tests.apps import control_workers, sample
from tests.helpers import NO_CONFIG, Daemon, eventually, run_cli

APPS = ("tests.apps.sample", "tests.apps.control_workers")


def cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, "--config", str(NO_CONFIG), dsn=dsn)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
async def runs(db: asyncpg.Connection) -> asyncpg.Connection:
    await db.execute(control_workers.RUNS_TABLE)
    await db.execute("TRUNCATE control_runs")
    return db


async def start(
    daemons, *names: str, queues: str = "default:2,other:2", env: dict[str, str] | None = None
) -> list[Daemon]:
    started = [daemons(queues=queues, node=name, app=APPS, env=env).start() for name in names]
    for daemon in started:
        await daemon.wait_ready()
    return started


async def status(dsn: str) -> dict:
    result = cli(dsn, "status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


async def wait_state(
    client: jobrunner.Client, ids: list[int], state: JobState, timeout_s: float = 30
) -> None:
    async def check() -> bool:
        states = [(await client.get_job(i)).state for i in ids]
        assert states == [state] * len(ids), states
        return True

    await eventually(check, timeout_s)


async def test_pause_holds_every_node_and_later_ones_until_resume(client, db, daemons) -> None:
    a, b = await start(daemons, "ctl-a", "ctl-b")
    paused = cli(client.dsn, "pause", "default")
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout.splitlines() == [
        "paused queue 'default' on every node (persisted: nodes that start later follow it)",
        "applied by 2 nodes: ctl-a, ctl-b",
    ]
    held = await client.insert_all([sample.record_run.new({"i": i}) for i in range(4)])
    # A job of another queue, woken by the same kind of NOTIFY, runs: the nodes are awake.
    probe = await client.insert(sample.noop.new({}, queue="other"))
    await wait_state(client, [probe.id], JobState.COMPLETED)
    assert [(await client.get_job(j.id)).state for j in held] == [JobState.AVAILABLE] * 4

    (c,) = await start(daemons, "ctl-c")
    shown = await status(client.dsn)
    (default,) = [q for q in shown["queues"] if q["name"] == "default"]
    assert default["paused"] is True and default["paused_on"] == ["ctl-a", "ctl-b", "ctl-c"]
    assert default["jobs"]["available"] == 4 and default["persisted"]["paused"] is True
    assert c.events("control.loaded")[0]["paused"] == ["default"]
    probe = await client.insert(sample.noop.new({}, queue="other"))
    await wait_state(client, [probe.id], JobState.COMPLETED)
    assert await db.fetchval("SELECT count(*) FROM test_executions") == 0

    resumed = cli(client.dsn, "resume", "default")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.splitlines()[1] == "applied by 3 nodes: ctl-a, ctl-b, ctl-c"
    await wait_state(client, [j.id for j in held], JobState.COMPLETED)
    for daemon in (a, b, c):
        assert await daemon.stop() == 0


async def test_scale_changes_how_many_jobs_run_at_once(client, db, daemons, runs) -> None:
    a, b = await start(daemons, "scale-a", "scale-b", queues="default:1")
    scaled = cli(client.dsn, "scale", "default", "3", "--node", "scale-a")
    assert scaled.returncode == 0, scaled.stderr
    assert scaled.stdout.splitlines() == [
        "scaled queue 'default' to 3 per node on node 'scale-a' "
        "(not persisted: nodes that start later do not follow it)",
        "applied by 1 node: scale-a",
    ]
    jobs = await client.insert_all([control_workers.slow.new({"sleep": 1.5}) for _ in range(10)])

    async def three_at_once_on_a() -> bool:
        rows = dict(await db.fetch(control_workers.MAX_CONCURRENCY, jobs[0].id))
        assert rows.get("scale-a") == 3, rows
        return True

    await eventually(three_at_once_on_a, 20)
    down = cli(client.dsn, "scale", "default", "1")
    assert down.returncode == 0 and "applied by 2 nodes: scale-a, scale-b" in down.stdout
    scaled_at = await db.fetchval("SELECT max(applied_at) FROM jobrunner_control_applied")
    await wait_state(client, [j.id for j in jobs], JobState.COMPLETED, 40)

    # Scaling down cancelled nothing, and every run started since waited for a free slot.
    assert await db.fetchval("SELECT count(*) FROM control_runs WHERE cancelled") == 0
    rows = dict(await db.fetch(control_workers.MAX_CONCURRENCY, jobs[0].id))
    assert rows == {"scale-a": 3, "scale-b": 1}
    later = await db.fetchval(
        "SELECT max((SELECT count(*) FROM control_runs o WHERE o.node = r.node "
        "AND o.started_at <= r.started_at AND o.ended_at > r.started_at)) "
        "FROM control_runs r WHERE r.started_at > $1",
        scaled_at,
    )
    assert later == 1
    shown = await status(client.dsn)
    assert {n["name"]: n["queues"]["default"]["limit"] for n in shown["nodes"]} == {
        "scale-a": 1,
        "scale-b": 1,
    }
    assert shown["queues"][0]["persisted"] == {"paused": False, "limit": 1}
    assert await a.stop() == 0 and await b.stop() == 0


async def test_stop_node_stops_only_that_node_gracefully(client, db, daemons, runs) -> None:
    a, b = await start(daemons, "stop-a", "stop-b")
    assert cli(client.dsn, "pause", "default", "--node", "stop-b").returncode == 0
    job = await client.insert(control_workers.slow.new({"sleep": 2}))

    async def running_on_a() -> bool:
        return (
            await db.fetchval("SELECT node FROM control_runs WHERE job_id = $1", job.id) == "stop-a"
        )

    await eventually(running_on_a)
    stopped = cli(client.dsn, "stop", "--node", "stop-a", "--grace", "20")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.splitlines() == [
        "stopping gracefully (running jobs get 20s) on node 'stop-a'",
        "applied by 1 node: stop-a",
    ]
    assert await a.wait(30) == 0
    assert a.events("node.stopping")[0]["grace_s"] == 20
    assert (await client.get_job(job.id)).state is JobState.COMPLETED
    assert not await db.fetchval("SELECT cancelled FROM control_runs WHERE job_id = $1", job.id)
    assert b.proc.poll() is None
    assert [r["name"] for r in await db.fetch("SELECT name FROM jobrunner_nodes")] == ["stop-b"]
    assert await b.stop() == 0


async def test_cancel_stops_a_running_job_on_its_node(client, db, daemons, runs) -> None:
    (a,) = await start(daemons, "cancel-a")
    job = await client.insert(control_workers.slow.new({"sleep": 60}))

    async def running() -> bool:
        return bool(await db.fetchval("SELECT 1 FROM control_runs WHERE job_id = $1", job.id))

    await eventually(running)
    cancelled = cli(client.dsn, "jobs", "cancel", str(job.id))
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout == f"cancelled job {job.id} (executing on cancel-a: stopping it)\n"

    async def stopped_there() -> bool:
        return await db.fetchval("SELECT cancelled FROM control_runs WHERE job_id = $1", job.id)

    await eventually(stopped_there)
    assert (await client.get_job(job.id)).state is JobState.CANCELLED
    interrupted = a.events("job.interrupted")
    assert [(e["job_id"], e["reason"]) for e in interrupted] == [(job.id, "cancelled")]
    shown = await status(client.dsn)

    async def idle() -> bool:
        node = (await status(client.dsn))["nodes"][0]
        assert node["queues"]["default"]["running"] == 0, node
        return True

    await eventually(idle)
    assert shown["queues"][0]["jobs"]["cancelled"] == 1
    assert await a.stop() == 0


async def test_a_node_that_does_not_apply_is_named(client, db, daemons) -> None:
    # A long lease, so the stopped node stays live (and waited for) through the command.
    a, b = await start(daemons, "late-a", "late-b", env={"JOBRUNNER_NODE_LEASE_S": "60"})
    b.signal(signal.SIGSTOP)
    try:
        paused = cli(client.dsn, "pause", "default", "--timeout", "1")
    finally:
        b.signal(signal.SIGCONT)
    assert paused.returncode == 1
    assert paused.stdout.splitlines()[1] == "applied by 1 node: late-a"
    assert one_error_line(paused) == (
        "error: not applied within 1s by 1 node: late-b; check them with 'jobrunner status'"
    )

    async def caught_up() -> bool:
        nodes = await db.fetch("SELECT node FROM jobrunner_control_applied ORDER BY node")
        assert [r["node"] for r in nodes] == ["late-a", "late-b"]
        return True

    await eventually(caught_up)
    assert await a.stop() == 0 and await b.stop() == 0


async def test_without_nodes_and_bad_input(client, db) -> None:
    paused = cli(client.dsn, "pause", "default")
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout == (
        "paused queue 'default' on every node (persisted: nodes that start "
        "later follow it); no live node serves it, nothing to wait for\n"
    )
    assert await db.fetchval("SELECT paused FROM jobrunner_queues WHERE name = 'default'")
    assert cli(client.dsn, "stop").stdout == (
        "stopping gracefully (running jobs get the node's shutdown_grace_s) on every node; "
        "no live node, nothing to wait for\n"
    )
    cases = {
        ("pause", "emials"): "error: unknown queue 'emials': no node serves it and no job uses "
        "it (known queues: default); pass --force to use it anyway",
        ("scale", "default", "0"): "error: queue limit must be a whole number from 1 to 100000, "
        "got 0",
        ("scale", "default", "lots"): "error: queue limit must be a whole number >= 1, got 'lots'",
        ("scale", "default"): "error: give a LIMIT (or --reset)",
        ("scale", "default", "3", "--reset"): "error: give a LIMIT or --reset, not both",
        ("resume", "default", "--node", "ghost"): "error: unknown node 'ghost': no live node "
        "has that name (live nodes: none); see "
        "'jobrunner status'",
        ("stop", "--node", "ghost"): "error: unknown node 'ghost': no live node has that name "
        "(live nodes: none); see 'jobrunner status'",
        ("pause", "no spaces"): "error: queue name must be 1-128 letters, digits or '_.-:', "
        "got 'no spaces'",
    }
    for args, message in cases.items():
        result = cli(client.dsn, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert one_error_line(result) == message
        assert result.stdout == ""
    assert await db.fetchval("SELECT count(*) FROM jobrunner_control") == 2
    reset = cli(client.dsn, "scale", "default", "--reset")
    assert reset.returncode == 0, reset.stderr
    assert reset.stdout.startswith("queue 'default' back to each node's own limit on every node")
    assert await db.fetchval("SELECT count(*) FROM jobrunner_control") == 3
    forced = cli(client.dsn, "pause", "emials", "--force")
    assert forced.returncode == 0 and "no live node serves it" in forced.stdout
