"""The scheduler across real daemons: cron exactly once per slot through a leader's death,
rescue of a killed daemon's job, and no rescue of a live daemon's long job."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg

from tests.helpers import Daemon, eventually, run_cli

APPS = ("tests.apps.sample", "tests.apps.sched_workers")
EVERY_SECOND = """
[[crontab]]
name = "every-second"
schedule = "* * * * * *"
worker = "sched.tick"
"""


async def cron_slots(db: asyncpg.Connection) -> list[datetime]:
    rows = await db.fetch(
        "SELECT meta->>'cron_slot' AS slot FROM jobrunner_jobs "
        "WHERE meta->>'cron' = 'every-second' ORDER BY 1"
    )
    return [datetime.fromisoformat(r["slot"]) for r in rows]


async def leader_node(db: asyncpg.Connection) -> str | None:
    return await db.fetchval("SELECT node FROM jobrunner_leader WHERE expires_at > now()")


async def test_three_daemons_insert_one_job_per_slot_through_leader_changes(
    db: asyncpg.Connection, daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    config = tmp_path / "jobrunner.toml"
    config.write_text(EVERY_SECOND)
    nodes = [daemons(app=APPS, args=["--config", str(config)]).start() for _ in range(3)]
    for daemon in nodes:
        await daemon.wait_ready()
    by_name = {d.node: d for d in nodes}

    async def slots_after(moment: datetime, count: int) -> list[datetime]:
        slots = await cron_slots(db)
        assert len([s for s in slots if s > moment]) >= count, slots
        return slots

    start = await db.fetchval("SELECT now()")
    await eventually(lambda: slots_after(start, 3), timeout_s=20)
    first_leader = await leader_node(db)
    assert first_leader in by_name
    by_name[first_leader].kill()
    killed_at = await db.fetchval("SELECT now()")

    async def new_leader() -> str:
        node = await leader_node(db)
        assert node is not None and node != first_leader, node
        return node

    second_leader = await eventually(new_leader, timeout_s=20)
    await eventually(lambda: slots_after(killed_at, 4), timeout_s=20)
    assert await by_name[second_leader].stop() == 0  # a clean stop hands over too
    stopped_at = await db.fetchval("SELECT now()")
    await eventually(lambda: slots_after(stopped_at, 3), timeout_s=20)
    [last] = [d for d in nodes if d.node not in (first_leader, second_leader)]
    assert await leader_node(db) == last.node
    assert await last.stop() == 0

    slots = await cron_slots(db)
    assert len(slots) == len(set(slots)) >= 10
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert gaps == [timedelta(seconds=1)] * (len(slots) - 1), slots
    inserted = [e for d in nodes for e in d.events("cron.inserted")]
    logged = [datetime.fromisoformat(e["slot"]) for e in inserted]
    assert len(logged) == len(set(logged)) and set(logged) <= set(slots)
    # kill -9 may land between an insert and its log line; the clean leaders logged all theirs
    assert {s for s in slots if s > killed_at} <= set(logged)
    assert {e["cron"] for e in inserted} == {"every-second"}
    assert {d.node for d in nodes if d.events("cron.inserted")} == {
        first_leader,
        second_leader,
        last.node,
    }


async def test_a_killed_daemons_job_is_rescued_and_run_once_more(
    db: asyncpg.Connection, daemons: Callable[..., Daemon]
) -> None:
    doomed = await daemons(app=APPS).start().wait_ready()
    await db.execute(
        "INSERT INTO jobrunner_jobs (worker, args) VALUES ('sched.slow_first', '{\"sleep\": 120}')"
    )
    job_id = await db.fetchval("SELECT id FROM jobrunner_jobs")

    async def started() -> bool:
        return bool(await db.fetchval("SELECT count(*) FROM test_executions"))

    await eventually(started, timeout_s=20)
    survivor = await daemons(app=APPS).start().wait_ready()
    doomed.kill()

    async def completed() -> asyncpg.Record:
        row = await db.fetchrow(
            "SELECT state::text, attempt, errors::text, attempted_by "
            "FROM jobrunner_jobs WHERE id = $1",
            job_id,
        )
        assert row["state"] == "completed", row
        return row

    job = await eventually(completed, timeout_s=30)
    runs = await db.fetch("SELECT attempt, node FROM test_executions ORDER BY attempt")
    assert [(r["attempt"], r["node"]) for r in runs] == [(1, doomed.node), (2, survivor.node)]
    assert job["attempt"] == 2 and job["attempted_by"][0] == survivor.node
    assert f"orphaned: node {doomed.node} stopped heartbeating" in job["errors"]
    assert (
        await db.fetchval("SELECT count(*) FROM jsonb_array_elements($1::jsonb)", job["errors"])
        == 1
    )
    nodes = await db.fetch("SELECT name FROM jobrunner_nodes")
    assert [n["name"] for n in nodes] == [survivor.node]  # the dead node's row went too
    assert await survivor.stop() == 0
    assert [e["job_id"] for e in survivor.events("rescuer.rescued")] == [job_id]


async def test_a_long_job_on_a_live_daemon_is_never_rescued(
    db: asyncpg.Connection, daemons: Callable[..., Daemon]
) -> None:
    """Node lease 3 s, rescue every 0.5 s: a job of 6 s outlives two leases, untouched."""
    pair = [await daemons(app=APPS).start().wait_ready() for _ in range(2)]
    await db.execute(
        "INSERT INTO jobrunner_jobs (worker, args) VALUES ('sched.slow_first', '{\"sleep\": 6}')"
    )

    async def completed() -> asyncpg.Record:
        row = await db.fetchrow("SELECT state::text, attempt, errors::text FROM jobrunner_jobs")
        assert row["state"] == "completed", row
        return row

    job = await eventually(completed, timeout_s=30)
    assert (job["attempt"], job["errors"]) == (1, "[]")
    runs = await db.fetch("SELECT attempt FROM test_executions")
    assert [r["attempt"] for r in runs] == [1]
    for daemon in pair:
        assert await daemon.stop() == 0
    assert [e for d in pair for e in d.events("rescuer.rescued")] == []
    assert any(d.events("leader.elected") for d in pair)


async def test_a_bad_crontab_fails_start_with_one_line(dsn: str, tmp_path: Path) -> None:
    config = tmp_path / "jobrunner.toml"
    config.write_text('[[crontab]]\nschedule = "*/5 * * * *"\nworker = "myapp.workers.nothing"\n')
    result = run_cli("start", "--config", str(config), "--app", "tests.apps.sample", dsn=dsn)
    assert result.returncode == 2, result
    assert result.stderr.strip().splitlines() == [
        "error: crontab entry 'myapp.workers.nothing@*/5 * * * *' names unknown worker "
        "'myapp.workers.nothing'; is its module in --app?"
    ]
    config.write_text('[[crontab]]\nschedule = "every monday"\nworker = "sample.noop"\n')
    result = run_cli("start", "--config", str(config), "--app", "tests.apps.sample", dsn=dsn)
    assert result.returncode == 2, result
    assert result.stderr.strip().splitlines() == [
        "error: crontab entry 'sample.noop@every monday' has invalid schedule 'every monday'; "
        "use 5 fields (minute hour day month weekday), or 6 with seconds last"
    ]
