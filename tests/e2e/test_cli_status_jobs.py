"""`jobrunner status`, `jobrunner jobs ...` and `jobrunner enqueue`, as text and as JSON."""

from __future__ import annotations

import json
import re
import socket
import subprocess

import jobrunner
from jobrunner import JobState
from tests.apps import sample
from tests.helpers import NO_CONFIG, eventually, run_cli

APP = ("--app", "tests.apps.sample")


def cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, "--config", str(NO_CONFIG), dsn=dsn)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def bad(result: subprocess.CompletedProcess[str], message: str, code: int = 2) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stderr == f"error: {message}\n"


def cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def zero_jobs(**counts: int) -> dict[str, int]:
    return {s.value: counts.get(s.value, 0) for s in JobState}


async def test_status_as_text_and_json(client, db, daemons) -> None:
    a = daemons(queues="default:2,other:1", node="status-a").start()
    b = daemons(queues="default:3", node="status-b").start()
    await a.wait_ready()
    await b.wait_ready()
    ok(cli(client.dsn, "pause", "default", "--node", "status-b"))
    await client.insert_all([sample.noop.new({}, queue="reports") for _ in range(2)])
    await client.insert(sample.noop.new({}, queue="reports", schedule_in=3600))
    ok(cli(client.dsn, "scale", "reports", "4"))
    ok(cli(client.dsn, "pause", "reports"))

    async def one_leader() -> dict:
        shown = json.loads(ok(cli(client.dsn, "status", "--json")))
        assert sum(n["leader"] for n in shown["nodes"]) == 1, shown["nodes"]
        return shown

    shown = await eventually(one_leader, 30)
    nodes = {n["name"]: n for n in shown["nodes"]}
    assert set(nodes) == {"status-a", "status-b"}
    for name, daemon in (("status-a", a), ("status-b", b)):
        node = nodes[name]
        assert (node["host"], node["pid"], node["live"]) == (
            socket.gethostname(),
            daemon.proc.pid,
            True,
        )
        assert set(node) == {
            "name",
            "host",
            "pid",
            "started_at",
            "heartbeat_at",
            "expires_at",
            "live",
            "leader",
            "queues",
        }
    assert nodes["status-a"]["queues"] == {
        "default": {"limit": 2, "paused": False, "running": 0, "ahead": 0},
        "other": {"limit": 1, "paused": False, "running": 0, "ahead": 0},
    }
    assert nodes["status-b"]["queues"] == {
        "default": {"limit": 3, "paused": True, "running": 0, "ahead": 0}
    }
    assert shown["queues"] == [
        {
            "name": "default",
            "nodes": ["status-a", "status-b"],
            "limit": 5,
            "running": 0,
            "ahead": 0,
            "paused": False,
            "paused_on": ["status-b"],
            "persisted": {"paused": False, "limit": None},
            "jobs": zero_jobs(),
        },
        {
            "name": "other",
            "nodes": ["status-a"],
            "limit": 1,
            "running": 0,
            "ahead": 0,
            "paused": False,
            "paused_on": [],
            "persisted": {"paused": False, "limit": None},
            "jobs": zero_jobs(),
        },
        {
            "name": "reports",
            "nodes": [],
            "limit": 0,
            "running": 0,
            "ahead": 0,
            "paused": True,
            "paused_on": [],
            "persisted": {"paused": True, "limit": 4},
            "jobs": zero_jobs(available=2, scheduled=1),
        },
    ]

    lines = ok(cli(client.dsn, "status")).splitlines()
    assert lines[0] == "NODES"
    assert cells(lines[1]) == [
        "NAME",
        "HOST",
        "PID",
        "STARTED",
        "HEARTBEAT",
        "LEADER",
        "QUEUES (running/limit)",
    ]
    rows = {cells(line)[0]: cells(line) for line in lines[2:4]}
    assert rows["status-a"][6] == "default:0/2, other:0/1"
    assert rows["status-b"][6] == "default:0/3 paused"
    assert rows["status-b"][2] == str(b.proc.pid) and rows["status-b"][4].endswith("s ago")
    assert sorted(r[5] for r in rows.values()) == ["no", "yes"]
    queues = lines[lines.index("QUEUES") + 1 : lines.index("QUEUES") + 5]
    assert cells(queues[0]) == [
        "QUEUE",
        "NODES",
        "LIMIT",
        "RUNNING",
        "PAUSED",
        "AVAILABLE",
        "SCHEDULED",
        "EXECUTING",
        "RETRYABLE",
        "COMPLETED",
        "DISCARDED",
        "CANCELLED",
    ]
    assert [cells(q) for q in queues[1:]] == [
        ["default", "2", "5", "0", "1/2 nodes"] + ["0"] * 7,
        ["other", "1", "1", "0", "no"] + ["0"] * 7,
        ["reports", "0", "-", "-", "yes", "2", "1"] + ["0"] * 5,
    ]
    assert len({len(q) for q in queues}) == 1  # aligned: the last column is right-aligned
    assert lines[-1] == "persisted for nodes that start later: reports paused, limit 4"
    assert await a.stop() == 0 and await b.stop() == 0
    empty = ok(cli(client.dsn, "status")).splitlines()
    assert empty[:2] == ["NODES", "no node is running; start one with 'jobrunner start'"]


async def test_jobs_list_show_retry_cancel(client, db) -> None:
    done = await client.insert_all([sample.noop.new({"n": i}) for i in range(2)])
    failing = await client.insert(sample.fail.new({"message": "boom"}))
    assert cli(client.dsn, "drain", "--with-scheduled", *APP).returncode == 1
    waiting = await client.insert(sample.noop.new({"n": 9}, queue="later", schedule_in=600))

    listed = ok(cli(client.dsn, "jobs", "list")).splitlines()
    assert cells(listed[0]) == ["ID", "STATE", "QUEUE", "WORKER", "ATTEMPT", "SCHEDULED", "ARGS"]
    assert [cells(line)[:5] for line in listed[1:]] == [
        [str(waiting.id), "scheduled", "later", "sample.noop", "0/20"],
        [str(failing.id), "discarded", "default", "sample.fail", "3/3"],
        [str(done[1].id), "completed", "default", "sample.noop", "1/20"],
        [str(done[0].id), "completed", "default", "sample.noop", "1/20"],
    ]
    assert cells(listed[1])[-1] == '{"n":9}'
    one = json.loads(
        ok(
            cli(
                client.dsn,
                "jobs",
                "list",
                "--queue",
                "default",
                "--worker",
                "sample.noop",
                "--limit",
                "1",
                "--json",
            )
        )
    )
    assert [(j["id"], j["state"], j["args"]) for j in one] == [(done[1].id, "completed", {"n": 1})]
    (discarded,) = json.loads(ok(cli(client.dsn, "jobs", "list", "--state", "discarded", "--json")))
    assert discarded["id"] == failing.id and len(discarded["errors"]) == 3
    assert [e["attempt"] for e in discarded["errors"]] == [1, 2, 3]
    assert "RuntimeError: boom" in discarded["errors"][0]["traceback"]
    assert ok(cli(client.dsn, "jobs", "list", "--state", "cancelled")) == "no job matches\n"
    bad(
        cli(client.dsn, "jobs", "list", "--state", "done"),
        "unknown job state 'done'; states are available, scheduled, executing, retryable, "
        "completed, discarded, cancelled",
    )

    shown = ok(cli(client.dsn, "jobs", "show", str(failing.id))).splitlines()
    assert shown[0] == f"job {failing.id}"
    assert cells(shown[1]) == ["state", "discarded"] and cells(shown[4]) == ["attempt", "3 of 3"]
    assert shown[shown.index("args") + 1 : shown.index("meta")] == [
        "  {",
        '    "message": "boom"',
        "  }",
    ]
    assert "errors (3)" in shown
    assert any(re.fullmatch(r"  attempt 1 at \S+: RuntimeError: boom", s) for s in shown)
    assert shown.count("    Traceback (most recent call last):") == 3
    as_json = json.loads(ok(cli(client.dsn, "jobs", "show", str(failing.id), "--json")))
    assert as_json == {**discarded}
    bad(cli(client.dsn, "jobs", "show", "999"), "no job with id 999; see 'jobrunner jobs list'")
    bad(cli(client.dsn, "jobs", "show", "abc"), "job id must be a whole number, got 'abc'")

    assert (
        ok(cli(client.dsn, "jobs", "retry", "--state", "discarded", "--queue", "default", "--yes"))
        == f"retried 1 job (state discarded, queue 'default'): {failing.id}\n"
    )
    job = await client.get_job(failing.id)
    assert (job.state, job.max_attempts) == (JobState.AVAILABLE, 4)
    assert ok(cli(client.dsn, "jobs", "retry", str(done[0].id))) == (
        f"retried job {done[0].id} (completed -> available)\n"
    )
    assert ok(cli(client.dsn, "jobs", "retry", "--state", "discarded", "--yes")) == (
        "retried 0 jobs (state discarded)\n"
    )
    assert ok(cli(client.dsn, "jobs", "retry", "--state", "discarded")) == (
        "no job to retry (state discarded)\n"
    )
    bad(
        cli(client.dsn, "jobs", "retry", "1", "--state", "discarded"),
        "give job ids or filters (--state, --queue, ...), not both",
    )
    bad(
        cli(client.dsn, "jobs", "retry"),
        "retry every job? give a filter (--state, --queue, ...), or --all to mean it",
    )
    bad(
        cli(client.dsn, "jobs", "retry", "--state", "executing"),
        "executing jobs cannot be retried; cancel them first",
    )

    cancelled = cli(client.dsn, "jobs", "cancel", str(waiting.id), str(done[1].id))
    assert cancelled.returncode == 1
    assert cancelled.stdout == f"cancelled job {waiting.id} (was scheduled)\n"
    assert cancelled.stderr == f"error: not cancelled: job {done[1].id} already completed\n"
    assert ok(cli(client.dsn, "jobs", "cancel", str(waiting.id))) == (
        f"job {waiting.id} was already cancelled\n"
    )
    bad(
        cli(client.dsn, "jobs", "cancel", str(waiting.id), "999"),
        "no job with id 999; see 'jobrunner jobs list'",
    )
    states = [(await client.get_job(j.id)).state for j in (*done, failing, waiting)]
    assert states == [
        JobState.AVAILABLE,
        JobState.COMPLETED,
        JobState.AVAILABLE,
        JobState.CANCELLED,
    ]


async def test_enqueue(client: jobrunner.Client, db) -> None:
    result = cli(
        client.dsn,
        "enqueue",
        "sample.noop",
        "--args",
        '{"user_id": 42}',
        "--queue",
        "other",
        "--priority",
        "3",
        "--tag",
        "cli",
        *APP,
    )
    first = (await client.list_jobs())[0]
    assert result.stdout == f"enqueued job {first.id}: sample.noop in queue 'other', available\n"
    assert result.stderr == (
        "note: no live node serves queue 'other'; the job waits until one does\n"
    )
    assert (first.args, first.priority, first.tags, first.max_attempts) == (
        {"user_id": 42},
        3,
        ("cli",),
        20,
    )

    scheduled = json.loads(
        ok(cli(client.dsn, "enqueue", "sample.fail", "--schedule-in", "60", "--json", *APP))
    )
    assert (
        scheduled["state"],
        scheduled["queue"],
        scheduled["max_attempts"],
        scheduled["conflict"],
    ) == ("scheduled", "default", 3, False)

    bad(
        cli(client.dsn, "enqueue", "billing.invoice", "--args", "{}"),
        "unknown worker 'billing.invoice': no registered worker has that name (app modules: "
        "none given); pass --app MODULE that defines it, or --force to insert it anyway",
    )
    forced = cli(client.dsn, "enqueue", "billing.invoice", "--force")
    assert forced.returncode == 0
    assert forced.stderr.splitlines()[0] == (
        "warning: no registered worker is named 'billing.invoice'; inserting anyway"
    )
    assert (await client.list_jobs())[0].worker == "billing.invoice"
    bad(
        cli(client.dsn, "enqueue", "sample.noop", "--args", "[1, 2]", *APP),
        "--args must be a JSON object like '{\"user_id\": 42}', got list '[1, 2]'",
    )
    bad(
        cli(client.dsn, "enqueue", "sample.noop", "--args", "{oops", *APP),
        "--args is not valid JSON (Expecting property name enclosed in double quotes: line 1 "
        "column 2 (char 1)); give an object like '{\"user_id\": 42}'",
    )
    bad(
        cli(client.dsn, "enqueue", "sample.noop", "--priority", "10", *APP),
        "priority must be an integer from 0 to 9, got 10",
    )
    bad(
        cli(client.dsn, "enqueue", "sample.noop", "--app", "tests.apps.nope"),
        "cannot import app module 'tests.apps.nope': ModuleNotFoundError: No module named "
        "'tests.apps.nope'",
    )
    assert await db.fetchval("SELECT count(*) FROM jobrunner_jobs") == 3
