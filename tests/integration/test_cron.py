"""Cron: only the leader inserts, one job per entry and slot (the database enforces it),
new entries start with the next slot, and downtime is caught up as configured."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

import jobrunner
from jobrunner import CronEntry, JobState
from jobrunner.engine.leader import Leader
from jobrunner.plugins import cron
from jobrunner.plugins.cron import Cron
from tests.apps import sched_workers  # noqa: F401 - registers sched.tick
from tests.helpers import eventually

T0 = datetime(2030, 1, 1, 12, 0, 0, 300_000, tzinfo=UTC)
HOURLY = CronEntry("0 * * * *", "sched.tick", args={"kind": "hourly"}, name="hourly")


class Clock:
    """An injected `now`: tests move it to simulate ticks, downtime and restarts."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    async def __call__(self) -> datetime:
        return self.at


def make_cron(pool: asyncpg.Pool, clock: Clock, *entries: CronEntry, **options: object) -> Cron:
    options.setdefault("interval_s", 1.0)
    options.setdefault("grace_s", 5.0)
    return Cron(pool, cron.parse_all(entries or (HOURLY,)), now=clock, **options)  # type: ignore[arg-type]


async def cron_jobs(db: asyncpg.Connection) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT id, worker, queue, args::text, meta->>'cron' AS cron, "
        "meta->>'cron_slot' AS slot, unique_key, state::text "
        "FROM jobrunner_jobs ORDER BY meta->>'cron_slot', id"
    )


async def last_slot(db: asyncpg.Connection, name: str) -> datetime | None:
    return await db.fetchval("SELECT last_slot FROM jobrunner_cron WHERE name = $1", name)


async def test_a_new_entry_starts_with_the_next_slot(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    clock = Clock(T0)
    plugin = make_cron(client.pool, clock)
    assert await plugin._tick() == []
    assert await last_slot(db, "hourly") == datetime(2030, 1, 1, 12, tzinfo=UTC)
    clock.at = T0 + timedelta(minutes=30)
    assert await plugin._tick() == []

    clock.at = datetime(2030, 1, 1, 13, 0, 0, 200_000, tzinfo=UTC)
    [job] = await plugin._tick()
    assert job.worker == "sched.tick" and job.args == {"kind": "hourly"}
    assert job.state is JobState.AVAILABLE
    assert job.meta == {"cron": "hourly", "cron_slot": "2030-01-01T13:00:00+00:00"}
    assert job.unique_key == "cron:hourly:2030-01-01T13:00:00+00:00"
    assert await last_slot(db, "hourly") == datetime(2030, 1, 1, 13, tzinfo=UTC)
    assert await plugin._tick() == []
    assert len(await cron_jobs(db)) == 1


async def test_only_the_leader_inserts(client: jobrunner.Client, db: asyncpg.Connection) -> None:
    leader = Leader(client.pool, node="node-a-1", lease_s=30)
    follower = Leader(client.pool, node="node-b-2", lease_s=30)
    assert await leader._tick() and not await follower._tick()
    clock = Clock(T0)
    leading = make_cron(client.pool, clock, leader=leader)
    following = make_cron(client.pool, clock, leader=follower)
    assert await following._tick() == []
    assert await last_slot(db, "hourly") is None  # a follower does not even record progress
    await leading._tick()
    clock.at = T0 + timedelta(hours=1)
    assert await following._tick() == []
    assert len(await leading._tick()) == 1
    assert [r["slot"] for r in await cron_jobs(db)] == ["2030-01-01T13:00:00+00:00"]


async def test_the_database_refuses_a_second_job_for_a_slot(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    """Two nodes that both think they lead, and a restart that lost progress, insert once."""
    clock = Clock(T0)
    one, two = make_cron(client.pool, clock), make_cron(client.pool, clock)
    await one._tick()
    clock.at = T0 + timedelta(hours=1)
    results = await asyncio.gather(one._tick(), two._tick())
    assert sorted(len(r) for r in results) == [0, 1]

    await db.execute("UPDATE jobrunner_cron SET last_slot = last_slot - interval '1 hour'")
    assert await make_cron(client.pool, clock)._tick() == []
    await db.execute("UPDATE jobrunner_jobs SET state = 'completed', completed_at = now()")
    await db.execute("UPDATE jobrunner_cron SET last_slot = last_slot - interval '1 hour'")
    assert await make_cron(client.pool, clock)._tick() == []  # unique in every state
    rows = await cron_jobs(db)
    assert [(r["slot"], r["state"]) for r in rows] == [("2030-01-01T13:00:00+00:00", "completed")]
    assert await last_slot(db, "hourly") == datetime(2030, 1, 1, 13, tzinfo=UTC)


async def test_after_downtime_only_the_most_recent_slot_by_default(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    clock = Clock(T0)
    await make_cron(client.pool, clock)._tick()
    clock.at = T0 + timedelta(hours=10, minutes=5)  # down from 12:00 to 22:05
    jobs = await make_cron(client.pool, clock)._tick()
    assert [j.meta["cron_slot"] for j in jobs] == ["2030-01-01T22:00:00+00:00"]
    assert await make_cron(client.pool, clock)._tick() == []


async def test_after_downtime_slots_within_catch_up_are_inserted_once(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    clock = Clock(T0)
    await make_cron(client.pool, clock, catch_up_s=3 * 3600)._tick()
    clock.at = T0 + timedelta(hours=10, minutes=5)
    restarted = make_cron(client.pool, clock, catch_up_s=3 * 3600)
    jobs = await restarted._tick()
    assert [j.meta["cron_slot"] for j in jobs] == [
        "2030-01-01T20:00:00+00:00",
        "2030-01-01T21:00:00+00:00",
        "2030-01-01T22:00:00+00:00",
    ]
    assert await restarted._tick() == []
    assert len(await cron_jobs(db)) == 3


async def test_each_entry_keeps_its_own_progress(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    every_minute = CronEntry("* * * * *", "sched.tick", queue="reports", priority=2)
    clock = Clock(T0)
    plugin = make_cron(client.pool, clock, HOURLY, every_minute)
    await plugin._tick()
    clock.at = T0 + timedelta(minutes=1)
    [minute_job] = await plugin._tick()
    assert minute_job.meta == {
        "cron": "sched.tick@* * * * *",
        "cron_slot": "2030-01-01T12:01:00+00:00",
    }
    assert (minute_job.queue, minute_job.priority) == ("reports", 2)
    clock.at = T0 + timedelta(hours=1)
    jobs = await plugin._tick()
    assert sorted((j.meta["cron"], j.meta["cron_slot"]) for j in jobs) == [
        ("hourly", "2030-01-01T13:00:00+00:00"),
        ("sched.tick@* * * * *", "2030-01-01T13:00:00+00:00"),
    ]  # the 58 minutes between were longer ago than the grace: only the most recent


async def test_a_runner_inserts_and_runs_a_per_second_crontab(
    client: jobrunner.Client, db: asyncpg.Connection, make_runner
) -> None:
    entry = CronEntry("* * * * * *", "sched.tick", name="every-second")
    async with make_runner(crontab=(entry,)):

        async def three_ran() -> list[asyncpg.Record]:
            rows = await db.fetch(
                "SELECT j.meta->>'cron_slot' AS slot, e.attempt FROM test_executions e "
                "JOIN jobrunner_jobs j ON j.id = e.job_id ORDER BY slot"
            )
            assert len(rows) >= 3, rows
            return rows

        ran = await eventually(three_ran, timeout_s=20)
    slots = [datetime.fromisoformat(r["slot"]) for r in ran]
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert gaps == [timedelta(seconds=1)] * (len(slots) - 1)
    assert {r["attempt"] for r in ran} == {1}
    assert all(r["cron"] == "every-second" for r in await cron_jobs(db))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (CronEntry("* * * * * * * *", "sched.tick"), "has invalid schedule '* * * * * * * *'"),
        (CronEntry("* * * * *", "nowhere.nothing"), "names unknown worker 'nowhere.nothing'"),
        (
            CronEntry("* * * * *", "sched.tick", timezone="Nowhere/City"),
            "has unknown timezone 'Nowhere/City'",
        ),
    ],
)
async def test_a_bad_crontab_stops_the_runner_before_it_registers(
    client: jobrunner.Client,
    db: asyncpg.Connection,
    make_runner,
    entry: CronEntry,
    message: str,
) -> None:
    with pytest.raises(jobrunner.ConfigError, match=message):
        async with make_runner(crontab=(entry,)):
            pytest.fail("the runner started")
    assert await db.fetchval("SELECT count(*) FROM jobrunner_nodes") == 0


async def test_a_clock_stepped_forward_and_back_resumes_cron_within_one_slot(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    """The database clock jumps 12 hours ahead for one tick, then comes back: the entry
    fires again at the next slot instead of staying silent until real time catches up."""
    from structlog.testing import capture_logs

    minutely = CronEntry("* * * * *", "sched.tick", name="minutely")
    clock = Clock(T0)
    plugin = make_cron(client.pool, clock, minutely)
    with capture_logs() as logs:
        assert await plugin._tick() == []
        clock.at = T0 + timedelta(hours=12)
        assert len(await plugin._tick()) == 1  # the jump itself: the latest slot, as downtime
        clock.at = T0 + timedelta(minutes=1)
        assert await plugin._tick() == []
        assert await last_slot(db, "minutely") == datetime(2030, 1, 1, 12, 1, tzinfo=UTC)
        clock.at = T0 + timedelta(minutes=2)
        resumed = await plugin._tick()
    assert [job.meta["cron_slot"] for job in resumed] == ["2030-01-01T12:02:00+00:00"]
    jumps = [entry for entry in logs if entry["event"] == "cron.clock_jump"]
    assert any(entry.get("ahead_s") for entry in jumps), logs
    assert any(entry.get("jump_s", 0) > 3600 for entry in jumps), logs
