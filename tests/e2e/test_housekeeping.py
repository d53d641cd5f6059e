"""Housekeeping: `jobrunner prune --older-than`, `jobrunner reindex`, and the reindexer plugin
rebuilding the jobs table's indexes concurrently on its schedule, leader-only."""

from __future__ import annotations

import subprocess

import asyncpg
import pytest

import jobrunner
from tests.apps import sample
from tests.helpers import NO_CONFIG, eventually, run_cli

STAMP = {"completed": "completed_at", "cancelled": "cancelled_at", "discarded": "discarded_at"}
INDEX_FILES = """
SELECT c.relname, c.relfilenode FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = 'jobrunner_jobs'::regclass
"""


def cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, "--config", str(NO_CONFIG), dsn=dsn)


async def finished(client: jobrunner.Client, db: asyncpg.Connection, state: str, days: int) -> int:
    job = await client.insert(sample.noop.new({"state": state, "days": days}))
    stamp = STAMP.get(state)
    extra = f", {stamp} = now() - $2::int * interval '1 day'" if stamp else ", attempt = $2::int"
    await db.execute(
        f"UPDATE jobrunner_jobs SET state = $3::jobrunner_job_state{extra} WHERE id = $1",
        job.id,
        days,
        state,
    )
    return job.id


async def remaining(db: asyncpg.Connection) -> set[int]:
    return {r["id"] for r in await db.fetch("SELECT id FROM jobrunner_jobs")}


async def test_prune_deletes_finished_jobs_older_than_the_age(
    client: jobrunner.Client, db: asyncpg.Connection, dsn: str
) -> None:
    old_done = await finished(client, db, "completed", 10)
    old_discarded = await finished(client, db, "discarded", 10)
    old_cancelled = await finished(client, db, "cancelled", 10)
    recent = await finished(client, db, "completed", 1)
    waiting = await finished(client, db, "available", 10)
    only = cli(dsn, "prune", "--older-than", "7d", "--state", "discarded")
    assert only.returncode == 0, only.stderr
    assert only.stdout.strip() == "pruned 1 jobs finished more than 7d ago (discarded 1)"
    assert old_discarded not in await remaining(db)
    result = cli(dsn, "prune", "--older-than", "7d")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "pruned 2 jobs finished more than 7d ago (completed 1, cancelled 1, discarded 0)"
    )
    assert await remaining(db) == {recent, waiting}
    assert {old_done, old_cancelled}.isdisjoint(await remaining(db))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "soon"], "error: --older-than must be a duration like 7d"),
        (["--older-than", "7d", "--state", "available"], "error: --state takes completed"),
    ],
)
def test_prune_refuses_bad_input_in_one_line(dsn: str, args: list[str], message: str) -> None:
    result = cli(dsn, "prune", *args)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(message), result.stderr


async def index_files(db: asyncpg.Connection) -> dict[str, int]:
    return {r["relname"]: r["relfilenode"] for r in await db.fetch(INDEX_FILES)}


async def test_reindex_rebuilds_every_index_of_the_jobs_table(
    db: asyncpg.Connection, dsn: str
) -> None:
    before = await index_files(db)
    result = cli(dsn, "reindex")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"rebuilt {len(before)} indexes: ")
    after = await index_files(db)
    assert set(after) == set(before)
    assert all(after[name] != before[name] for name in before), (before, after)


async def test_the_reindexer_rebuilds_on_its_schedule_and_drops_failed_copies(
    client: jobrunner.Client, db: asyncpg.Connection, daemons
) -> None:
    await client.insert_all([sample.noop.new({"i": i}, schedule_in=3600) for i in range(2)])
    with pytest.raises(asyncpg.UniqueViolationError):  # a failed concurrent build: invalid
        await db.execute(
            "CREATE UNIQUE INDEX CONCURRENTLY jobrunner_jobs_fetch_idx_ccnew "
            "ON jobrunner_jobs (queue)"
        )
    before = await index_files(db)
    assert "jobrunner_jobs_fetch_idx_ccnew" in before
    kept = set(before) - {"jobrunner_jobs_fetch_idx_ccnew"}
    env = {"JOBRUNNER_REINDEX_SCHEDULE": "* * * * * *", "JOBRUNNER_REINDEX_CHECK_INTERVAL_S": "0.2"}
    daemon = daemons(env=env).start()
    await daemon.wait_ready()

    async def rebuilt() -> bool:
        after = await index_files(db)  # a rebuild under way shows its _ccnew or _ccold too
        assert "jobrunner_jobs_fetch_idx_ccnew" not in after, after
        assert all(n in after and after[n] != before[n] for n in kept), (before, after)
        logged = {e["index"] for e in daemon.events("reindexer.rebuilt")}
        assert logged >= kept, logged
        return True

    await eventually(rebuilt, 30)
    assert await daemon.stop() == 0
    assert daemon.events("reindexer.dropped_leftover")
