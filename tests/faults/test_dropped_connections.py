"""Every session of the daemons (listener, pool connections) is terminated, again and again."""

from __future__ import annotations

from functools import partial

import pytest

import jobrunner
from jobrunner.core.config import Settings
from tests.faults import ledger
from tests.faults._load import TEST_APP, Inserter, listening_again, wait_progress
from tests.faults.conftest import report
from tests.helpers import eventually

pytestmark = pytest.mark.faults

ROUNDS = 8

TERMINATE = """
SELECT count(pg_terminate_backend(pid))
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name <> $1
  AND pid <> ALL($2::int[])
"""


async def test_jobs_keep_flowing_when_every_connection_is_killed(
    db, fdb, faults_dsn, fault_daemons
):
    """Two daemons and an inserting client; eight times, every session on the database but
    the test's own is killed with pg_terminate_backend. Each time the listeners come back
    and jobs keep completing; in the end every job completed once: a killed session
    aborts its transaction, so nothing is claimed or acked half-way."""
    daemons = [fault_daemons(faults_dsn, queues="faults:20").start() for _ in range(2)]
    for daemon in daemons:
        await daemon.wait_ready()

    terminated = 0
    async with jobrunner.connect(settings=Settings(database_url=faults_dsn, pool_size=4)) as client:
        inserter = Inserter(client, batch=25, rate=400, max_jobs=8_000).start()
        seen = await wait_progress(faults_dsn, 100)
        for round_ in range(1, ROUNDS + 1):
            terminated += await fdb.fetchval(TERMINATE, TEST_APP, [db.get_server_pid()])
            await eventually(partial(listening_again, daemons, round_), timeout_s=30)
            seen = await wait_progress(faults_dsn, seen + 150)
        await inserter.stop()

    await ledger.wait_all_completed(fdb, timeout_s=60)
    keys = {r["key"] for r in await fdb.fetch("SELECT args->>'key' AS key FROM jobrunner_jobs")}
    assert inserter.confirmed <= keys
    figures = await ledger.audit(
        fdb,
        "connections killed",
        max_extra_per_job=0,
        faults={"kill_rounds": ROUNDS, "sessions_killed": terminated},
    )
    figures.extra["insert_errors"] = inserter.errors
    figures.extra["fetches_failed"] = sum(len(d.events("producer.fetch_failed")) for d in daemons)
    figures.extra["claims_recovered"] = sum(
        len(d.events("producer.claim_recovered")) for d in daemons
    )
    for daemon in daemons:
        assert await daemon.stop() == 0
    report(figures)
