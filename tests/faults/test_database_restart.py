"""The PostgreSQL server restarts (cleanly and by crashing) under daemons and inserts."""

from __future__ import annotations

import asyncio
from functools import partial

import pytest

import jobrunner
from jobrunner.core.config import Settings
from tests.faults import ledger
from tests.faults._load import Inserter, completed, connect, listening_again, wait_progress
from tests.faults.conftest import prepare_database, report
from tests.helpers import FAST_ENV, eventually

pytestmark = pytest.mark.faults

PASSWORD = "s3cret-restart-pw"  # trust authentication ignores it; it only has to stay secret
LEASE_S = float(FAST_ENV["JOBRUNNER_NODE_LEASE_S"])


async def test_daemons_ride_out_database_restarts(own_server, fault_daemons) -> None:
    """Two daemons and a client inserting jobs while the server restarts four times: twice
    cleanly, once crashing, once staying down longer than a node lease. The daemons
    reconnect by themselves, every committed job completes, no finished job is written
    twice, and the password in the URL never reaches a log line."""
    await prepare_database(own_server)
    dsn = own_server.dsn("jobrunner", password=PASSWORD)
    daemons = [fault_daemons(dsn, queues="faults:20").start() for _ in range(2)]
    for daemon in daemons:
        await daemon.wait_ready()

    settings = Settings(database_url=dsn, pool_size=4)
    restarts = {"fast": 0, "immediate": 0, "long": 0}
    async with jobrunner.connect(settings=settings) as client:
        inserter = Inserter(client, batch=25, rate=400, max_jobs=6_000).start()
        seen = await wait_progress(dsn, 100)
        for mode, down_s in (("fast", 0), ("immediate", 0), ("fast", LEASE_S + 1.5), ("fast", 0)):
            await asyncio.to_thread(own_server.stop, mode)
            if down_s:
                # Down for longer than a lease: nodes expire, acks and heartbeats wait.
                await asyncio.sleep(down_s)
            await asyncio.to_thread(own_server.start)
            restarts["long" if down_s else mode] += 1
            await eventually(partial(listening_again, daemons, sum(restarts.values())), 30)
            seen = await wait_progress(dsn, seen + 200)
        await inserter.stop()

    for daemon in daemons:
        assert daemon.proc is not None and daemon.proc.poll() is None, (
            f"a daemon died with the database:\n{daemon.output()[-3000:]}"
        )

    conn = await connect(own_server.dsn("jobrunner"))
    try:
        await ledger.wait_all_completed(conn, timeout_s=60)
        keys = {
            r["key"] for r in await conn.fetch("SELECT args->>'key' AS key FROM jobrunner_jobs")
        }
        missing = inserter.confirmed - keys
        assert not missing, f"{len(missing)} confirmed inserts are not in the table"
        assert keys <= inserter.confirmed | inserter.ambiguous
        # A job runs again after a restart only if its node's lease ran out meanwhile and it
        # was rescued; each restart may cost a job at most one extra execution.
        figures = await ledger.audit(
            conn,
            "database restart",
            max_extra_per_job=sum(restarts.values()),
            faults={
                "restarts": sum(restarts.values()),
                **{f"restarts_{k}": v for k, v in restarts.items()},
            },
        )
    finally:
        await conn.close()
    figures.extra["insert_errors"] = inserter.errors
    figures.extra["claims_recovered"] = sum(
        len(d.events("producer.claim_recovered")) for d in daemons
    )
    figures.extra["ambiguous_committed"] = len(keys & inserter.ambiguous)

    for daemon in daemons:
        assert await daemon.stop() == 0
        output = daemon.output()
        assert PASSWORD not in output, "the database password reached the daemon's log"
    report(figures)
    assert await completed(own_server.dsn("jobrunner")) == figures.inserted
