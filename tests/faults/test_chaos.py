"""Three daemons, tens of thousands of jobs, random kill -9 and SIGTERM and restarts."""

from __future__ import annotations

import os
import random
import signal
from dataclasses import dataclass
from functools import partial

import pytest

import jobrunner
from jobrunner.core.config import Settings
from tests.apps.faults_workers import Record
from tests.faults import ledger
from tests.faults._load import Inserter, completed, executing_on
from tests.faults.conftest import report
from tests.helpers import Daemon, eventually

pytestmark = [pytest.mark.faults, pytest.mark.timeout(400)]

DAEMONS = 3
LIMIT = 20
UPFRONT = 20_000
DURING = 5_000
FAULTS = 12
GRACE_S = "0.3"


@dataclass
class Fault:
    kind: str  # "kill" or "term"
    node: str
    bound: int  # at most this many jobs may run again because of it


def _jobs(rng: random.Random, n: int) -> list[jobrunner.NewJob]:
    # Mostly short jobs; one in fifty runs past the SIGTERM grace period.
    return [
        Record.new(
            {
                "sleep": rng.choice((1.0, 1.5))
                if rng.random() < 0.02
                else round(rng.uniform(0, 0.03), 3)
            }
        )
        for _ in range(n)
    ]


async def _moved_on(dsn: str, past: int) -> int | None:
    n = await completed(dsn)
    return n if n is not None and n >= past else None


async def test_random_kills_and_restarts_of_three_daemons(fdb, faults_dsn, fault_daemons):
    """Daemons are killed (SIGKILL) or stopped past a short grace period (SIGTERM) at
    random while 25,000 jobs flow, and replaced at once. In the end every job completed,
    no finished job was written twice, every extra execution followed a run on a node a
    fault hit, at most once per fault, and no node caused more re-runs than it held jobs."""
    seed = int(os.environ.get("JOBRUNNER_FAULTS_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)

    def spawn() -> Daemon:
        return fault_daemons(
            faults_dsn, queues=f"faults:{LIMIT}", args=["--shutdown-grace-s", GRACE_S]
        ).start()

    live = [spawn() for _ in range(DAEMONS)]
    for daemon in live:
        await daemon.wait_ready()
    settings = Settings(database_url=faults_dsn, pool_size=4)
    faults: list[Fault] = []
    async with jobrunner.connect(settings=settings) as client:
        for start in range(0, UPFRONT, 2_000):
            await client.insert_all(_jobs(rng, min(2_000, UPFRONT - start)))
        inserter = Inserter(client, batch=50, rate=300, max_jobs=DURING).start()
        seen = await completed(faults_dsn) or 0
        for _ in range(FAULTS):
            seen = await eventually(
                partial(_moved_on, faults_dsn, seen + rng.randint(300, 1200)), timeout_s=60
            )
            victim = live.pop(rng.randrange(len(live)))
            if rng.random() < 0.6:
                victim.kill()
                faults.append(Fault("kill", victim.node, await executing_on(fdb, victim.node)))
            else:
                victim.signal(signal.SIGTERM)
                assert await victim.wait(timeout_s=30) == 0, victim.output()[-3000:]
                faults.append(Fault("term", victim.node, LIMIT))
            replacement = spawn()
            await replacement.wait_ready()
            live.append(replacement)
        await inserter.stop()

    await ledger.wait_all_completed(fdb, timeout_s=120)
    kills = sum(f.kind == "kill" for f in faults)
    figures = await ledger.audit(
        fdb,
        "chaos",
        faulted_nodes={f.node for f in faults},
        expect_jobs=UPFRONT + len(inserter.confirmed | inserter.ambiguous),
        faults={
            "daemons": DAEMONS,
            "kill9": kills,
            "sigterm": len(faults) - kills,
            "held_at_kill9": sum(f.bound for f in faults if f.kind == "kill"),
        },
    )
    for fault in faults:
        caused = figures.extra_by_node[fault.node]
        assert caused <= fault.bound, (
            f"{caused} jobs ran again after {fault.kind} of {fault.node}, "
            f"which held at most {fault.bound}"
        )
    figures.extra["seed"] = seed
    figures.extra["rerun_after_kill9"] = sum(
        figures.extra_by_node[f.node] for f in faults if f.kind == "kill"
    )
    figures.extra["rerun_after_sigterm"] = sum(
        figures.extra_by_node[f.node] for f in faults if f.kind == "term"
    )
    for daemon in live:
        assert await daemon.stop() == 0
    report(figures)
