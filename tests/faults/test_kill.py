"""Daemons killed with SIGKILL mid-jobs, and stopped with SIGTERM past their grace period."""

from __future__ import annotations

import pytest

import jobrunner
from jobrunner import JobState
from jobrunner.core.config import Settings
from tests.apps.faults_workers import LongFirst, Record
from tests.faults import ledger
from tests.faults._load import executing_on, ran_on
from tests.faults.conftest import report
from tests.helpers import eventually

pytestmark = pytest.mark.faults


async def test_kill_9_mid_jobs_every_job_completes_once_more_at_most(
    fdb, faults_dsn, fault_daemons
):
    """Two daemons share 400 jobs of 0.1-0.4 s; one is killed with SIGKILL while it runs
    twenty of them. The survivor rescues them once the victim's lease runs out: every job
    completes, and only jobs the victim was running ran again, once."""
    victim = fault_daemons(faults_dsn, queues="faults:20").start()
    survivor = fault_daemons(faults_dsn, queues="faults:20").start()
    await victim.wait_ready()
    await survivor.wait_ready()
    settings = Settings(database_url=faults_dsn, pool_size=2)
    async with jobrunner.connect(settings=settings) as client:
        await client.insert_all([Record.new({"sleep": 0.1 + (i % 4) / 10}) for i in range(400)])
    await eventually(lambda: ran_on(fdb, victim.node, 60), timeout_s=30)
    victim.kill()
    in_flight = await executing_on(fdb, victim.node)
    assert in_flight > 0, "the kill should hit running jobs"

    await ledger.wait_all_completed(fdb, timeout_s=60)
    figures = await ledger.audit(
        fdb,
        "kill -9",
        faulted_nodes={victim.node},
        expect_jobs=400,
        faults={"kills": 1, "in_flight_at_kill": in_flight},
    )
    assert figures.extra["rescued"] == in_flight
    assert figures.duplicates <= in_flight
    assert await survivor.stop() == 0
    report(figures)


async def test_a_node_restarted_under_the_same_name_after_kill_9_finishes_its_jobs(
    fdb, faults_dsn, fault_daemons
):
    """A daemon with a fixed --node (as a StatefulSet gives) is killed with SIGKILL and
    started again under the same name before its lease runs out. The jobs the dead process
    held must not stay executing for ever under a name that looks alive."""
    first = fault_daemons(faults_dsn, queues="faults:10", node="worker-0").start()
    await first.wait_ready()
    settings = Settings(database_url=faults_dsn, pool_size=2)
    async with jobrunner.connect(settings=settings) as client:
        jobs = await client.insert_all([LongFirst.new({"sleep": 30}) for _ in range(5)])
    await eventually(lambda: ran_on(fdb, "worker-0", 5), timeout_s=30)
    first.kill()
    again = fault_daemons(faults_dsn, queues="faults:10", node="worker-0").start()
    await again.wait_ready()

    await ledger.wait_all_completed(fdb, timeout_s=30)
    figures = await ledger.audit(
        fdb,
        "kill -9, same node name",
        max_extra_per_job=1,
        expect_jobs=5,
        faults={"kills": 1, "in_flight_at_kill": 5},
    )
    assert figures.executions == 10
    async with jobrunner.connect(settings=settings) as client:
        for job in jobs:
            done = await client.get_job(job.id)
            assert done is not None and done.state is JobState.COMPLETED
    assert await again.stop() == 0
    report(figures)


async def test_sigterm_past_grace_returns_jobs_and_a_later_node_runs_them(
    fdb, faults_dsn, fault_daemons
):
    """A daemon running five 60-second jobs gets SIGTERM with a one-second grace period: it
    exits cleanly, the jobs go back to available without using an attempt, and a daemon
    started later runs them to completion."""
    first = fault_daemons(faults_dsn, queues="faults:10", args=["--shutdown-grace-s", "1"])
    first.start()
    await first.wait_ready()
    settings = Settings(database_url=faults_dsn, pool_size=2)
    async with jobrunner.connect(settings=settings) as client:
        jobs = await client.insert_all([LongFirst.new({"sleep": 60}) for _ in range(5)])
        await eventually(lambda: ran_on(fdb, first.node, 5), timeout_s=30)
        first.signal()
        assert await first.wait(timeout_s=20) == 0
        for job in jobs:
            back = await client.get_job(job.id)
            assert back is not None and back.state is JobState.AVAILABLE, back
            assert back.attempt == 0 and back.errors == (), back

        later = fault_daemons(faults_dsn, queues="faults:10").start()
        await later.wait_ready()
        await ledger.wait_all_completed(fdb, timeout_s=30)
        for job in jobs:
            done = await client.get_job(job.id)
            assert done is not None and done.attempt == 1 and done.errors == (), done
            assert done.attempted_by[0] == later.node
    figures = await ledger.audit(
        fdb,
        "SIGTERM past grace",
        faulted_nodes={first.node},
        expect_jobs=5,
        faults={"sigterms": 1, "interrupted": 5},
    )
    assert figures.executions == 10
    attempts = await fdb.fetch("SELECT DISTINCT attempt FROM fault_executions")
    assert [r["attempt"] for r in attempts] == [1], "an interrupted run must not use an attempt"
    assert await later.stop() == 0
    report(figures)
