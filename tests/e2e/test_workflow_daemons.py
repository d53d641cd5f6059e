"""Workflows, batches and chains run by several daemon processes: no step starts before its
deps finished, a kill -9 loses no step and runs none early, batch callbacks are inserted
once under racing nodes, and a chain never runs two of its jobs at once."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable

import asyncpg

import jobrunner
from jobrunner import Workflow
from tests.apps.workflow_workers import RUNS_TABLE, callback, step
from tests.helpers import Daemon, eventually

APP = ("tests.apps.workflow_workers",)


def random_dag(name: str, size: int, seed: int, sleep: float = 0.0) -> Workflow:
    """`size` steps; each depends on up to 3 random earlier ones (a third of them on none)."""
    rng = random.Random(seed)
    wf = Workflow(name)
    for i in range(size):
        deps = (
            [] if i == 0 or rng.random() < 0.3 else rng.sample(range(i), min(i, rng.randint(1, 3)))
        )
        wf.add(f"s{i}", step.new({"label": f"s{i}", "sleep": sleep}), deps=[f"s{d}" for d in deps])
    return wf


async def start(daemons: Callable[..., Daemon], count: int, queues: str) -> list[Daemon]:
    started = [daemons(queues=queues, app=APP).start() for _ in range(count)]
    for daemon in started:
        await daemon.wait_ready()
    return started


async def all_completed(
    db: asyncpg.Connection, workflow_id: int, size: int, timeout_s: float
) -> None:
    async def check() -> bool:
        n = await db.fetchval(
            "SELECT count(*) FROM jobrunner_jobs WHERE workflow_id = $1 AND state = 'completed'",
            workflow_id,
        )
        assert n == size, f"{n} of {size} steps completed"
        return True

    await eventually(check, timeout_s, interval_s=0.2)


EARLY_STARTS = """
-- Every run of a step that started before one of its deps' runs finished (none may).
SELECT j.step, d.step AS dep, r.started_at, dr.finished_at
FROM jobrunner_jobs AS j
JOIN wf_runs AS r ON r.job_id = j.id
JOIN jobrunner_jobs AS d ON d.workflow_id = j.workflow_id AND d.step = ANY (j.deps)
JOIN wf_runs AS dr ON dr.job_id = d.id
WHERE j.workflow_id = $1 AND (dr.finished_at IS NULL OR r.started_at < dr.finished_at)
  AND dr.pid <> -1
"""


async def test_a_1000_step_random_dag_runs_every_step_after_its_deps_on_two_daemons(
    client: jobrunner.Client, db: asyncpg.Connection, daemons
) -> None:
    await db.execute(RUNS_TABLE)
    await start(daemons, 2, "wfe:20")
    run = await client.insert_workflow(random_dag("dag", 1000, seed=17))
    await all_completed(db, run.id, 1000, timeout_s=120)
    runs = await db.fetchval(
        "SELECT count(*) FROM wf_runs r JOIN jobrunner_jobs j ON j.id = r.job_id "
        "WHERE j.workflow_id = $1 AND r.finished_at IS NOT NULL",
        run.id,
    )
    assert runs == 1000  # each step ran once
    assert await db.fetch(EARLY_STARTS, run.id) == []
    nodes = await db.fetchval(
        "SELECT count(DISTINCT attempted_by[1]) FROM jobrunner_jobs WHERE workflow_id = $1", run.id
    )
    assert nodes == 2  # both daemons took steps
    assert await db.fetchval("SELECT count(*) FROM jobrunner_job_deps") == 0


async def test_kill_9_mid_workflow_loses_no_step_and_runs_none_early(
    client: jobrunner.Client, db: asyncpg.Connection, daemons
) -> None:
    await db.execute(RUNS_TABLE)
    victim, survivor = await start(daemons, 2, "wfe:10")
    run = await client.insert_workflow(random_dag("killed", 300, seed=5, sleep=0.2))

    assert victim.proc is not None
    victim_pid = victim.proc.pid

    async def victim_busy() -> bool:
        running = await db.fetchval(
            "SELECT count(*) FROM wf_runs WHERE pid = $1 AND finished_at IS NULL", victim_pid
        )
        done = await db.fetchval(
            "SELECT count(*) FROM jobrunner_jobs WHERE workflow_id = $1 AND state = 'completed'",
            run.id,
        )
        assert running > 0 and done >= 50, (running, done)
        return True

    await eventually(victim_busy, 60, interval_s=0.01)
    victim.kill()
    await all_completed(db, run.id, 300, timeout_s=120)
    # Runs cut by the kill never finished; every run that started, did so after its deps'
    # runs that finished (a cut run of a dep never released anything).
    cut = await db.fetchval(
        "SELECT count(*) FROM wf_runs WHERE finished_at IS NULL AND pid = $1", victim_pid
    )
    assert cut > 0
    await db.execute("UPDATE wf_runs SET pid = -1 WHERE finished_at IS NULL")
    assert await db.fetch(EARLY_STARTS, run.id) == []
    assert await survivor.stop() == 0


async def test_batch_callbacks_are_inserted_once_with_three_nodes_racing_to_finish(
    client: jobrunner.Client, db: asyncpg.Connection, daemons
) -> None:
    await db.execute(RUNS_TABLE)
    await start(daemons, 3, "wfe:30")
    until = time.time() + 3  # every job of every batch ends at this instant
    batches = []
    for b in range(30):
        batches.append(
            await client.insert_batch(
                [step.new({"label": f"b{b}-{i}", "until": until}) for i in range(3)],
                on_completed=callback.new({"batch": b}),
                on_exhausted=callback.new({"batch": b}),
            )
        )

    async def settled() -> bool:
        n = await db.fetchval("SELECT count(*) FROM jobrunner_jobs WHERE worker = 'wfe.callback'")
        left = await db.fetchval(
            "SELECT count(*) FROM jobrunner_jobs WHERE worker = 'wfe.step' AND state <> 'completed'"
        )
        assert left == 0 and n >= 60, (left, n)
        return True

    await eventually(settled, 60, interval_s=0.1)
    finishers = await db.fetchval(
        "SELECT count(DISTINCT attempted_by[1]) FROM jobrunner_jobs WHERE worker = 'wfe.step'"
    )
    assert finishers == 3
    rows = await db.fetch(
        "SELECT (meta->>'batch_id')::bigint AS batch, meta->>'batch_callback' AS cond, count(*) "
        "FROM jobrunner_jobs WHERE worker = 'wfe.callback' GROUP BY 1, 2"
    )
    assert sorted((r["batch"], r["cond"], r["count"]) for r in rows) == sorted(
        (b.id, cond, 1) for b in batches for cond in ("completed", "exhausted")
    )


async def test_a_chain_never_runs_two_of_its_jobs_at_once_across_nodes(
    client: jobrunner.Client, db: asyncpg.Connection, daemons
) -> None:
    await db.execute(RUNS_TABLE)
    await start(daemons, 2, "wfe:10")
    jobs = []
    for n in range(20):  # three accounts, interleaved, inserted while the daemons run
        for account in ("a", "b", "c"):
            jobs.append(
                await client.insert(
                    step.new({"label": account, "sleep": 0.01 * (n % 3)}, chain=f"acct-{account}")
                )
            )

    async def done() -> bool:
        n = await db.fetchval("SELECT count(*) FROM wf_runs WHERE finished_at IS NOT NULL")
        assert n == 60, n
        return True

    await eventually(done, 60, interval_s=0.1)
    rows = await db.fetch("SELECT job_id, label, pid, started_at, finished_at FROM wf_runs")
    by_account: dict[str, list[asyncpg.Record]] = {}
    for row in rows:
        by_account.setdefault(row["label"], []).append(row)
    pids = set()
    for account, runs in by_account.items():
        ordered = sorted(runs, key=lambda r: r["job_id"])
        assert [r["started_at"] for r in ordered] == sorted(r["started_at"] for r in runs), account
        for before, after in itertools.pairwise(ordered):
            assert after["started_at"] >= before["finished_at"], account
        pids |= {r["pid"] for r in runs}
    assert len(pids) == 2  # both nodes ran jobs of the chains
    assert len(jobs) == 60
