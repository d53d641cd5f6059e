"""A per-second scheduled trigger on a SQLAlchemy model, run by two daemons: each record's
action runs exactly once, however the scans overlap the running jobs."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from tests.apps.trigger_models import TABLE_SQL
from tests.helpers import Daemon, eventually

RECORDS = 200


async def test_two_daemons_run_the_action_once_per_record(
    db: asyncpg.Connection, daemons: Callable[..., Daemon]
) -> None:
    await db.execute(TABLE_SQL)
    await db.execute("TRUNCATE trigger_orders RESTART IDENTITY")
    try:
        await _run_two_daemons(db, daemons)
    finally:
        await db.execute("TRUNCATE trigger_orders RESTART IDENTITY")


async def _run_two_daemons(db: asyncpg.Connection, daemons: Callable[..., Daemon]) -> None:
    started = [
        daemons(
            queues="orders:10",
            app=("tests.apps.trigger_models",),
            # slow enough that later scans find records whose job is still running
            env={"TRIGGER_ACTION_DELAY_S": "0.05"},
        ).start()
        for _ in range(2)
    ]
    for daemon in started:
        await daemon.wait_ready()
    await db.execute(
        f"INSERT INTO trigger_orders (status) SELECT 'pending' FROM generate_series(1, {RECORDS})"
    )

    async def all_done() -> bool:
        done = await db.fetchval("SELECT count(*) FROM trigger_orders WHERE status = 'done'")
        return bool(done == RECORDS)

    await eventually(all_done, timeout_s=90, interval_s=0.1)
    finished_at = await db.fetchval("SELECT now()")

    async def two_more_scans() -> bool:  # scans that find nothing left to do
        scans = await db.fetchval(
            "SELECT count(*) FROM jobrunner_jobs WHERE worker = 'tests.orders.process:scan' "
            "AND state = 'completed' AND attempted_at > $1",
            finished_at,
        )
        return bool(scans >= 2)

    await eventually(two_more_scans, timeout_s=20, interval_s=0.1)
    for daemon in started:
        assert await daemon.stop() == 0, daemon.output()

    runs = await db.fetch("SELECT runs, count(*) AS n FROM trigger_orders GROUP BY runs")
    assert [(r["runs"], r["n"]) for r in runs] == [(1, RECORDS)]
    states = await db.fetch(
        "SELECT state::text, meta ? 'skipped' AS skipped, count(*) AS n FROM jobrunner_jobs "
        "WHERE worker = 'tests.orders.process' GROUP BY 1, 2"
    )
    by_state = {(r["state"], r["skipped"]): r["n"] for r in states}
    assert by_state.get(("completed", False)) == RECORDS, by_state
    assert set(by_state) <= {("completed", False), ("completed", True)}, by_state
    slots = await db.fetchrow(
        "SELECT count(*) AS jobs, count(DISTINCT meta ->> 'cron_slot') AS slots "
        "FROM jobrunner_jobs WHERE worker = 'tests.orders.process:scan'"
    )
    assert slots["jobs"] == slots["slots"] >= 2  # one scan per slot, whichever node led
    pids = await db.fetchval("SELECT count(DISTINCT run_by) FROM trigger_orders")
    assert pids >= 1
