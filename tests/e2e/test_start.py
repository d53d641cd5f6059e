"""`jobrunner start` as a user runs it: signals, exit codes, the node row, logs, bad input."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

import jobrunner
from jobrunner import JobState
from tests.apps import daemon_workers
from tests.helpers import Daemon, eventually, run_cli

APPS = ("tests.apps.daemon_workers",)


@pytest.fixture
async def events(db: asyncpg.Connection) -> AsyncIterator[None]:
    """The `daemon_events` table the workers of tests.apps.daemon_workers write to, empty."""
    await db.execute(daemon_workers.EVENTS_TABLE)
    await db.execute("TRUNCATE daemon_events")
    yield


async def noted(db: asyncpg.Connection, event: str, n: int, timeout_s: float = 20) -> None:
    """Until exactly `n` jobs noted `event`."""

    async def check() -> bool:
        count = await db.fetchval("SELECT count(*) FROM daemon_events WHERE event = $1", event)
        assert count == n, f"{event}: {count} != {n}"
        return True

    await eventually(check, timeout_s)


async def logged(daemon: Daemon, event: str, timeout_s: float = 20) -> dict[str, Any]:
    async def check() -> dict[str, Any]:
        found = daemon.events(event)
        assert found, f"no {event!r} in the log:\n{daemon.output()}"
        return found[0]

    return await eventually(check, timeout_s)


async def get(client: jobrunner.Client, job_id: int) -> jobrunner.Job:
    job = await client.get_job(job_id)
    assert job is not None
    return job


# --- graceful shutdown ----------------------------------------------------------------------


async def test_sigterm_lets_running_jobs_finish_and_exits_0(client, db, daemons, events) -> None:
    daemon = daemons(queues="default:5", app=APPS).start()
    await daemon.wait_ready()
    running = await client.insert_all([daemon_workers.sleep.new({"sleep": 3}) for _ in range(3)])
    await noted(db, "start", 3)
    daemon.signal(signal.SIGTERM)
    await logged(daemon, "node.stopping")
    late = await client.insert(daemon_workers.sleep.new({"sleep": 0}))
    assert await daemon.wait(30) == 0
    await noted(db, "end", 3, timeout_s=0)
    await noted(db, "cancelled", 0, timeout_s=0)
    for job in running:
        assert (await get(client, job.id)).state is JobState.COMPLETED
    after = await get(client, late.id)  # inserted once fetching had stopped: left alone
    assert after.state is JobState.AVAILABLE and after.attempt == 0
    assert daemon.events("node.stopping")[0]["grace_s"] == 10
    assert daemon.events("node.stopped")
    assert await db.fetchval("SELECT count(*) FROM jobrunner_nodes") == 0


async def test_sigterm_puts_back_a_job_longer_than_the_grace(client, db, daemons, events) -> None:
    daemon = daemons(queues="default:5", app=APPS, args=["--shutdown-grace-s", "0.5"]).start()
    await daemon.wait_ready()
    inserted = await client.insert(daemon_workers.sleep.new({"sleep": 60}))
    await noted(db, "start", 1)
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(30) == 0
    await noted(db, "cancelled", 1, timeout_s=0)
    job = await get(client, inserted.id)
    assert job.state is JobState.AVAILABLE and job.attempt == 0 and job.errors == ()
    assert job.scheduled_at == inserted.scheduled_at  # back in its place in the queue
    assert daemon.events("node.stopping")[0]["grace_s"] == 0.5
    [interrupted] = daemon.events("job.interrupted")
    assert interrupted["job_id"] == inserted.id and interrupted["reason"] == "interrupted"
    assert await db.fetchval("SELECT count(*) FROM jobrunner_nodes") == 0


async def test_a_second_sigint_interrupts_running_jobs_at_once(client, db, daemons, events) -> None:
    daemon = daemons(queues="default:5", app=APPS, args=["--shutdown-grace-s", "300"]).start()
    await daemon.wait_ready()
    inserted = await client.insert_all([daemon_workers.sleep.new({"sleep": 60}) for _ in range(2)])
    await noted(db, "start", 2)
    daemon.signal(signal.SIGINT)
    await logged(daemon, "producer.draining")
    daemon.signal(signal.SIGINT)
    assert await daemon.wait(20) == 0  # neither the 60 s jobs nor the 300 s grace
    await noted(db, "cancelled", 2, timeout_s=0)
    for job in inserted:
        after = await get(client, job.id)
        assert after.state is JobState.AVAILABLE and after.attempt == 0 and after.errors == ()
    assert await db.fetchval("SELECT count(*) FROM jobrunner_nodes") == 0


async def test_cancelling_an_executing_job_stops_it_on_its_node(
    client, db, daemons, events
) -> None:
    daemon = daemons(queues="default:5", app=APPS).start()
    await daemon.wait_ready()
    inserted = await client.insert(daemon_workers.sleep.new({"sleep": 60}))
    await noted(db, "start", 1)
    await client.cancel_job(inserted.id)
    await noted(db, "cancelled", 1)
    interrupted = await logged(daemon, "job.interrupted")
    assert interrupted["job_id"] == inserted.id and interrupted["reason"] == "cancelled"
    assert await daemon.stop() == 0
    job = await get(client, inserted.id)
    assert job.state is JobState.CANCELLED and job.attempt == 1
    assert job.cancelled_at is not None and job.completed_at is None
    await noted(db, "end", 0, timeout_s=0)


# --- the node row ---------------------------------------------------------------------------


async def test_the_node_row_is_registered_refreshed_and_removed(client, db, daemons) -> None:
    daemon = daemons(queues="default:5,other:2").start()
    await daemon.wait_ready()
    assert daemon.proc is not None
    row = await db.fetchrow("SELECT * FROM jobrunner_nodes WHERE name = $1", daemon.node)
    assert row["host"] == socket.gethostname() and row["pid"] == daemon.proc.pid
    assert json.loads(row["queues"]) == {
        "default": {"limit": 5, "paused": False, "running": 0},
        "other": {"limit": 2, "paused": False, "running": 0},
    }
    assert row["expires_at"] > row["heartbeat_at"] >= row["started_at"]

    async def refreshed() -> bool:
        beat = await db.fetchrow(
            "SELECT heartbeat_at, expires_at FROM jobrunner_nodes WHERE name = $1", daemon.node
        )
        assert beat["heartbeat_at"] > row["heartbeat_at"]
        assert beat["expires_at"] > row["expires_at"]
        return True

    await eventually(refreshed, 15)
    assert await daemon.stop() == 0
    assert await db.fetchval("SELECT count(*) FROM jobrunner_nodes") == 0


async def test_a_killed_daemon_leaves_its_row_to_expire(db, daemons) -> None:
    daemon = daemons(queues="default:1").start()
    await daemon.wait_ready()
    daemon.kill()
    expires_at = await db.fetchval(
        "SELECT expires_at FROM jobrunner_nodes WHERE name = $1", daemon.node
    )
    assert expires_at is not None


async def test_a_dying_background_task_stops_the_daemon_with_exit_1(db, daemons) -> None:
    daemon = daemons(queues="default:1", app=("tests.apps.daemon_crash",)).start()
    assert await daemon.wait(30) == 1
    [failed] = daemon.events("node.task_failed")
    assert failed["task"] == "jobrunner.acker" and "acker crashed on purpose" in failed["error"]
    assert daemon.events("node.stopped")
    assert await db.fetchval("SELECT count(*) FROM jobrunner_nodes") == 0


# --- logs -----------------------------------------------------------------------------------


async def test_by_default_a_job_logs_one_line_when_it_ends(client, db, daemons, events) -> None:
    daemon = daemons(queues="default:5", app=APPS, env={"JOBRUNNER_LOG_FORMAT": "auto"}).start()
    await daemon.wait_ready()
    ok = await client.insert(daemon_workers.sleep.new({"sleep": 0}))
    stop = await logged(daemon, "job.stop")
    assert await daemon.stop() == 0
    assert stop["job_id"] == ok.id and stop["outcome"] == "completed" and stop["level"] == "info"
    assert stop["queue_time_s"] >= 0 and stop["duration_s"] >= 0
    assert not daemon.events("job.start")


async def test_job_events_are_json_lines_when_stdout_is_not_a_terminal(
    client, db, daemons, events
) -> None:
    daemon = daemons(
        queues="default:5",
        app=APPS,
        env={"JOBRUNNER_LOG_FORMAT": "auto"},
        args=["--log-job-start"],
    ).start()
    await daemon.wait_ready()
    ok = await client.insert(daemon_workers.sleep.new({"sleep": 0}))
    bad = await client.insert(daemon_workers.fail.new({"message": "nope"}))
    await logged(daemon, "job.exception")
    await logged(daemon, "job.stop")
    assert await daemon.stop() == 0
    lines = daemon.output().splitlines()
    assert lines and all(isinstance(json.loads(line), dict) for line in lines)
    by_job = {(e["event"], e["job_id"]): e for e in daemon.events() if "job_id" in e}
    for job, worker in ((ok, "daemon.sleep"), (bad, "daemon.fail")):
        start = by_job[("job.start", job.id)]
        assert (start["worker"], start["queue"], start["attempt"]) == (worker, "default", 1)
        assert start["level"] == "info" and start["queue_time_s"] >= 0 and "timestamp" in start
    stop = by_job[("job.stop", ok.id)]
    assert stop["outcome"] == "completed" and stop["duration_s"] >= 0
    assert stop["queue_time_s"] >= 0 and stop["attempt"] == 1
    exception = by_job[("job.exception", bad.id)]
    assert exception["level"] == "warning" and exception["outcome"] == "failure"
    assert exception["error"] == "RuntimeError: nope" and exception["worker"] == "daemon.fail"
    assert ("job.stop", bad.id) not in by_job


async def test_log_level_hides_lower_levels(client, db, daemons, events) -> None:
    daemon = daemons(queues="default:5", app=APPS, args=["--log-level", "warning"]).start()

    async def registered() -> bool:
        assert daemon.proc is not None and daemon.proc.poll() is None, daemon.output()
        return bool(await db.fetchval("SELECT 1 FROM jobrunner_nodes WHERE name = $1", daemon.node))

    await eventually(registered, 20)
    bad = await client.insert(daemon_workers.fail.new({}))
    exception = await logged(daemon, "job.exception")
    assert exception["job_id"] == bad.id
    assert await daemon.stop() == 0
    levels = {e["level"] for e in daemon.events()}
    assert levels <= {"warning", "error"} and "warning" in levels
    assert not daemon.events("job.start") and not daemon.events("node.started")


# --- bad input ------------------------------------------------------------------------------


def one_error_line(result: Any, code: int, *expected: str) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for part in expected:
        assert part in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("emails:0", "queue 'emails' limit must be from 1 to 100000, got 0"),
        ("emails:x", "queue 'emails' limit must be a whole number, got 'x'"),
        (":5", "empty queue name"),
        ("emails:1,emails:2", "queue 'emails' is given twice"),
        ("", "--queues is empty"),
    ],
)
def test_bad_queues_are_one_line_and_exit_2(dsn: str, spec: str, expected: str) -> None:
    result = run_cli("start", "--queues", spec, "--app", APPS[0], dsn=dsn)
    one_error_line(result, 2, expected)


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("tests.apps.daemon_broken", "No module named 'jobrunner_no_such_dependency'"),
        ("tests.apps.no_such_module", "No module named 'tests.apps.no_such_module'"),
        (
            "tests.apps.daemon_same_name",
            "worker name 'emails.send' is already taken by "
            "tests.apps.daemon_same_name.send_welcome",
        ),
    ],
)
def test_an_app_that_fails_to_import_is_one_line_and_exit_2(
    dsn: str, module: str, expected: str
) -> None:
    result = run_cli("start", "--queues", "default:1", "--app", module, dsn=dsn)
    one_error_line(result, 2, f"cannot import app module {module!r}", expected)


def test_an_unreachable_database_is_one_line_without_the_password() -> None:
    result = run_cli(
        "start", "--queues", "default:1", "--dsn", "postgresql://postgres:s3cret@127.0.0.1:1/x"
    )
    line = one_error_line(result, 1, "cannot connect to", "127.0.0.1:1")
    assert "s3cret" not in result.stdout + result.stderr and "***" in line


async def test_a_missing_schema_says_to_migrate(make_database) -> None:
    empty = await make_database("jobrunner_test_daemon_empty")
    result = await asyncio.to_thread(run_cli, "start", "--queues", "default:1", "--dsn", empty)
    one_error_line(result, 1, "run 'jobrunner migrate'")


def test_a_bad_log_level_is_one_line_and_exit_2(dsn: str) -> None:
    result = run_cli("start", "--queues", "default:1", "--log-level", "loud", dsn=dsn)
    one_error_line(result, 2, "log level must be debug, info, warning or error, got 'loud'")
