"""The network between a daemon and PostgreSQL fails at the worst moments (a proxy breaks it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import jobrunner
from jobrunner import JobState
from jobrunner.config import Settings
from tests.apps.faults_workers import Record
from tests.faults import ledger
from tests.faults.conftest import report
from tests.faults.proxy import Proxy

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
