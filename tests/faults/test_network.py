"""The network between a daemon and PostgreSQL fails at the worst moments (a proxy breaks it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import jobrunner
from jobrunner import JobState
from jobrunner.core.config import Settings
from tests.apps.faults_workers import LongFirst, Record
from tests.faults import ledger
from tests.faults._load import executing_on, ran_on
from tests.faults.conftest import report
from tests.faults.proxy import Proxy
from tests.helpers import eventually

pytestmark = pytest.mark.faults


@pytest.fixture
async def proxy(faults_dsn: str) -> AsyncIterator[Proxy]:
    started = await Proxy(faults_dsn).start()
    try:
        yield started
    finally:
        await started.stop()


async def test_a_claim_whose_reply_is_lost_still_runs(fdb, faults_dsn, proxy, fault_daemons):
    """The daemon's fetch commits (the job is executing, attempted by the daemon) but the
    connection dies before the reply arrives. The daemon must find out what it claimed
    and run it, rather than leave the job executing under a live node that never rescues it."""
    daemon = fault_daemons(proxy.dsn(), queues="faults:5").start()
    await daemon.wait_ready()
    cut = proxy.cut_on(b"lost-reply-marker")
    settings = Settings(database_url=faults_dsn, pool_size=2)
    async with jobrunner.connect(settings=settings) as client:
        job = await client.insert(Record.new({"marker": "lost-reply-marker"}))
        await asyncio.wait_for(cut.wait(), 10)
        claimed = await client.get_job(job.id)
        assert claimed is not None and claimed.state is JobState.EXECUTING, claimed
        await ledger.wait_all_completed(fdb, timeout_s=15)
    figures = await ledger.audit(
        fdb, "lost claim reply", max_extra_per_job=0, faults={"replies_lost": 1}
    )
    assert figures.executions == 1
    assert await daemon.stop() == 0
    report(figures)


async def test_a_partitioned_node_that_keeps_running_loses_its_jobs_once(
    fdb, faults_dsn, proxy, fault_daemons
):
    """A node cut off from the database for longer than its lease keeps running its jobs;
    another node rescues and runs them. When the network heals, the cut-off node's acks
    change nothing (it no longer owns the jobs), it stops its copies, and it goes on
    working: each job it held ran at most once more, and none was finished twice."""
    cut_off = fault_daemons(proxy.dsn(), queues="faults:5").start()
    await cut_off.wait_ready()
    settings = Settings(database_url=faults_dsn, pool_size=2)
    async with jobrunner.connect(settings=settings) as client:
        await client.insert_all([LongFirst.new({"sleep": 6}) for _ in range(5)])
        await eventually(lambda: ran_on(fdb, cut_off.node, 5), timeout_s=20)
        other = fault_daemons(faults_dsn, queues="faults:5").start()
        await other.wait_ready()

        proxy.partition()
        await eventually(lambda: _none_held(fdb, cut_off.node), timeout_s=30)
        rescued = await fdb.fetchval(
            "SELECT count(*) FROM jobrunner_jobs WHERE errors::text LIKE '%orphaned%'"
        )
        proxy.heal()

        await ledger.wait_all_completed(fdb, timeout_s=30)
        # The healed node refuses nothing new: it runs jobs again.
        await client.insert_all([Record.new({}) for _ in range(40)])
        await eventually(lambda: ran_on(fdb, cut_off.node, 6), timeout_s=30)
        await ledger.wait_all_completed(fdb, timeout_s=30)

    figures = await ledger.audit(
        fdb,
        "network partition",
        faulted_nodes={cut_off.node},
        expect_jobs=45,
        faults={"partitions": 1, "held": 5},
    )
    assert rescued == 5 and figures.extra_by_node[cut_off.node] == 5
    refused = cut_off.events("ack.stale") + cut_off.events("job.lost")
    assert refused, (
        f"the healed node wrote or kept something it no longer owned:\n{cut_off.output()[-3000:]}"
    )
    assert cut_off.proc is not None and cut_off.proc.poll() is None
    assert await cut_off.stop() == 0 and await other.stop() == 0
    report(figures)


async def _none_held(conn, node: str) -> bool:
    return await executing_on(conn, node) == 0
