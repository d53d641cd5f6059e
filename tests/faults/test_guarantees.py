"""What must hold without any fault injected: workers holding every pooled connection do
not make a live node look dead, a node paused past its lease never runs two copies of a
job, and a cancel notification forged by another role stops nothing."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator

import asyncpg
import pytest

import jobrunner
from jobrunner.core.config import Settings
from tests.apps.guarantee_workers import OVERLAPS_TABLE, hold_connection, long_run
from tests.faults import ledger
from tests.faults._load import connect, executing_on, ran_on
from tests.helpers import eventually

pytestmark = pytest.mark.faults

APP = ("tests.apps.guarantee_workers",)


@pytest.fixture
async def overlaps(fdb: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    await fdb.execute(OVERLAPS_TABLE)
    await fdb.execute("TRUNCATE fault_overlaps")
    yield fdb
    await fdb.execute("TRUNCATE fault_overlaps")


async def _insert(dsn: str, jobs: list[jobrunner.NewJob]) -> list[jobrunner.Job]:
    async with jobrunner.connect(settings=Settings(database_url=dsn, pool_size=2)) as client:
        return await client.insert_all(jobs)


async def test_jobs_holding_every_pooled_connection_do_not_make_their_node_look_dead(
    fdb, faults_dsn, fault_daemons
) -> None:
    """Twelve jobs each hold a connection of client.pool for 8 s on a node of limit 12 with
    10 pooled connections; a second node with the same short leases starts beside it. The
    first node's heartbeat and leader renewal do not wait behind the jobs, so its lease
    stays fresh, nothing is rescued, and every job runs once."""
    busy = fault_daemons(faults_dsn, queues="held:12", app=APP).start()
    await busy.wait_ready()
    await _insert(faults_dsn, [hold_connection.new({"hold": 8}) for _ in range(12)])

    async def all_claimed() -> bool:
        return await executing_on(fdb, busy.node) == 12

    await eventually(all_claimed, timeout_s=30)
    await eventually(lambda: ran_on(fdb, busy.node, 10), timeout_s=30)
    beside = fault_daemons(faults_dsn, queues="held:12", app=APP).start()
    await beside.wait_ready()

    await ledger.wait_all_completed(fdb, timeout_s=60)
    runs = await fdb.fetch(
        "SELECT job_id, count(*) AS n, min(node) AS node FROM fault_executions GROUP BY 1"
    )
    assert len(runs) == 12
    assert all(row["n"] == 1 and row["node"] == busy.node for row in runs), [dict(r) for r in runs]
    assert not busy.events("node.heartbeat_failed")
    assert await busy.stop() == 0
    assert await beside.stop() == 0


async def test_a_node_paused_past_its_lease_never_runs_two_copies_of_a_job(
    overlaps, faults_dsn, fault_daemons
) -> None:
    """A node runs a long job and is stopped (SIGSTOP) past its lease; the leader rescues the
    job, the node resumes and claims it again at once. The earlier run, which lost the job,
    is stopped before the new one starts: never two copies at once on the node."""
    leader = fault_daemons(faults_dsn, queues="elsewhere:1", app=APP).start()
    paused = fault_daemons(faults_dsn, queues="paused:2", app=APP).start()
    await leader.wait_ready()
    await paused.wait_ready()
    [job] = await _insert(faults_dsn, [long_run.new({"sleep": 30})])
    await eventually(lambda: ran_on(overlaps, paused.node, 1), timeout_s=30)

    paused.signal(signal.SIGSTOP)
    try:

        async def rescued() -> bool:
            state = await overlaps.fetchval(
                "SELECT state::text FROM jobrunner_jobs WHERE id = $1", job.id
            )
            return state == "available"

        await eventually(rescued, timeout_s=30)
    finally:
        paused.signal(signal.SIGCONT)

    async def ran_again() -> bool:
        n = await overlaps.fetchval(
            "SELECT count(*) FROM fault_executions WHERE job_id = $1 AND node = $2",
            job.id,
            paused.node,
        )
        return n >= 2

    await eventually(ran_again, timeout_s=30)
    assert await overlaps.fetchval("SELECT count(*) FROM fault_overlaps") == 0
    assert [e["job_id"] for e in paused.events("job.lost")] == [job.id]
    paused.kill()
    leader.kill()


@pytest.fixture
async def forger(faults_dsn: str, worker_suffix: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of another role, which holds no privilege on jobrunner's tables."""
    role = f"jobrunner_forger_{worker_suffix}"
    admin = await connect(faults_dsn)
    try:
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.execute(f'CREATE ROLE "{role}" LOGIN')
        user_dsn = faults_dsn.replace("://postgres@", f"://{role}@", 1)
        assert role in user_dsn, "the test server's URL names the postgres role"
        conn = await connect(user_dsn)
        try:
            yield conn
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()


async def test_a_forged_cancel_notification_stops_nothing(
    fdb, forger, faults_dsn, fault_daemons
) -> None:
    """Any role that can connect can NOTIFY jobrunner_cancel with a node name (visible in
    pg_stat_activity) and a job id. The node reads the job first: it is not cancelled, so
    the job runs on and completes."""
    node = fault_daemons(faults_dsn, queues="paused:1", app=APP).start()
    await node.wait_ready()
    [job] = await _insert(faults_dsn, [long_run.new({"sleep": 3})])
    await eventually(lambda: ran_on(fdb, node.node, 1), timeout_s=30)
    assert await forger.fetchval("SELECT current_user") != "postgres"

    await forger.execute("SELECT pg_notify('jobrunner_cancel', $1)", f"{node.node} {job.id}")

    async def answered() -> bool:
        return bool(node.events("job.cancel_ignored") or node.events("job.interrupted"))

    await eventually(answered, timeout_s=30)
    assert not node.events("job.interrupted") and not node.events("job.cancelling")
    await ledger.wait_all_completed(fdb, timeout_s=30)
    assert await fdb.fetchval("SELECT count(*) FROM fault_executions") == 1
    assert [e["job_id"] for e in node.events("job.cancel_ignored")] == [job.id]
    assert await node.stop() == 0
