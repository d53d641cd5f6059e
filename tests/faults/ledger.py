"""What the database says happened: executions per job, state transitions, and figures.

Two tables of the test database are the evidence:

- `fault_executions` (tests/apps/faults_workers.py): one row per execution of a job.
- `fault_transitions`: an AFTER UPDATE trigger on jobrunner_jobs records every state
  change with the attempt, so "a finished job is never acked twice" is checked on what
  PostgreSQL actually applied, not on what the daemons say they did.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from tests.apps.faults_workers import EXECUTIONS_TABLE

AUDIT = """
CREATE TABLE IF NOT EXISTS fault_transitions (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id    bigint NOT NULL,
    old_state text NOT NULL,
    new_state text NOT NULL,
    attempt   integer NOT NULL,
    node      text,
    at        timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE OR REPLACE FUNCTION fault_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fault_transitions (job_id, old_state, new_state, attempt, node)
    VALUES (NEW.id, OLD.state, NEW.state, NEW.attempt, NEW.attempted_by[1]);
    RETURN NULL;
END;
$$;
"""

TRIGGER = """
DROP TRIGGER IF EXISTS fault_audit ON jobrunner_jobs;
CREATE TRIGGER fault_audit AFTER UPDATE OF state ON jobrunner_jobs
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION fault_audit();
"""

FINISHED = ("completed", "discarded", "cancelled")


async def install(conn: asyncpg.Connection, *, audit: bool = True) -> None:
    """Create the executions ledger and the transitions audit in a migrated database; the
    audit trigger only with `audit` (a shared database drops it after each test)."""
    await conn.execute(EXECUTIONS_TABLE)
    await conn.execute(AUDIT)
    if audit:
        await conn.execute(TRIGGER)


async def uninstall_audit(conn: asyncpg.Connection) -> None:
    await conn.execute("DROP TRIGGER IF EXISTS fault_audit ON jobrunner_jobs")


async def reset(conn: asyncpg.Connection) -> None:
    await conn.execute("TRUNCATE fault_executions, fault_transitions RESTART IDENTITY")


async def states(conn: asyncpg.Connection) -> Counter[str]:
    rows = await conn.fetch("SELECT state::text, count(*) AS n FROM jobrunner_jobs GROUP BY 1")
    return Counter({row["state"]: row["n"] for row in rows})


async def wait_all_completed(conn: asyncpg.Connection, timeout_s: float) -> None:
    """Poll until every job is completed (or fail, saying what is left where)."""
    from tests.helpers import eventually

    async def done() -> bool:
        counts = await states(conn)
        assert set(counts) <= {"completed"}, f"not all completed yet: {dict(counts)}"
        return True

    await eventually(done, timeout_s=timeout_s, interval_s=0.2)


@dataclass
class Figures:
    """The end-of-scenario summary."""

    scenario: str
    inserted: int = 0
    executions: int = 0
    duplicates: int = 0
    lost: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    extra_by_node: Counter[str] = field(default_factory=Counter)  # re-run after a run there

    def line(self) -> str:
        parts = [
            f"{self.scenario}: inserted={self.inserted}",
            f"executions={self.executions}",
            f"duplicates={self.duplicates}",
            f"lost={self.lost}",
        ]
        parts += [f"{k}={v}" for k, v in self.faults.items()]
        parts += [f"{k}={v}" for k, v in self.extra.items()]
        return " ".join(parts)


async def audit(
    conn: asyncpg.Connection,
    scenario: str,
    *,
    faulted_nodes: Collection[str] = (),
    max_extra_per_job: int | None = None,
    faults: dict[str, int] | None = None,
    expect_jobs: int | None = None,
    allowed_errors: Collection[str] = ("orphaned",),
) -> Figures:
    """Check the ledger once every job has finished and return the scenario's figures.

    - every job is completed and ran at least once (lost = jobs with no execution or
      not completed);
    - no job left a finished state or was finished twice (an ack applied twice);
    - extra executions are explained by faults: with `faulted_nodes`, every execution of
      a job but its last ran on a node that was killed or interrupted, and on a different
      one each time (at most one extra execution per fault per job); with
      `max_extra_per_job`, no job ran more than that many extra times.
    """
    jobs = {
        r["id"]: r["state"] for r in await conn.fetch("SELECT id, state::text FROM jobrunner_jobs")
    }
    runs: dict[int, list[str]] = {}
    for row in await conn.fetch("SELECT job_id, node FROM fault_executions ORDER BY at, token"):
        runs.setdefault(row["job_id"], []).append(row["node"])
    transitions = await conn.fetch(
        "SELECT job_id, old_state, new_state FROM fault_transitions ORDER BY id"
    )
    errors = {
        r["id"]: r["errors"]
        for r in await conn.fetch(
            "SELECT id, errors::text FROM jobrunner_jobs WHERE errors <> '[]'"
        )
    }

    figures = Figures(scenario, inserted=len(jobs), faults=dict(faults or {}))
    figures.executions = sum(len(nodes) for nodes in runs.values())
    figures.duplicates = sum(len(nodes) - 1 for nodes in runs.values() if len(nodes) > 1)
    not_completed = {i: s for i, s in jobs.items() if s != "completed"}
    never_ran = [i for i in jobs if i not in runs]
    figures.lost = len(set(not_completed) | set(never_ran))
    figures.extra["rescued"] = sum(1 for e in errors.values() if "orphaned" in e)
    figures.extra["failed_attempts"] = sum(e.count('"attempt"') for e in errors.values())
    failed = {
        i: e
        for i, e in errors.items()
        if any(
            json.loads(e)[k]["error"].split(":")[0] not in allowed_errors
            for k in range(len(json.loads(e)))
        )
    }
    assert not failed, (
        f"attempts failed for other reasons than {allowed_errors}: {dict(list(failed.items())[:5])}"
    )
    assert figures.lost == 0, (
        f"{figures.line()}\nnot completed: {dict(list(not_completed.items())[:20])}\n"
        f"never ran: {never_ran[:20]}"
    )
    if expect_jobs is not None:
        assert len(jobs) == expect_jobs, f"expected {expect_jobs} jobs, found {len(jobs)}"
    strangers = set(runs) - set(jobs)
    assert not strangers, f"executions of jobs that do not exist: {sorted(strangers)[:20]}"

    left_finished = [t for t in transitions if t["old_state"] in FINISHED]
    assert not left_finished, f"finished jobs changed state again: {left_finished[:10]}"
    completions = Counter(t["job_id"] for t in transitions if t["new_state"] == "completed")
    twice = {job_id: n for job_id, n in completions.items() if n > 1}
    assert not twice, f"jobs completed more than once: {twice}"
    assert set(completions) == set(jobs), "a job became completed without a recorded transition"

    figures.extra_by_node = Counter(n for nodes in runs.values() for n in nodes[:-1])
    if max_extra_per_job is not None:
        over = {j: n for j, n in runs.items() if len(n) - 1 > max_extra_per_job}
        assert not over, (
            f"more than {max_extra_per_job} extra executions: {dict(list(over.items())[:10])}"
        )
    else:
        faulted = set(faulted_nodes)
        for job_id, nodes in runs.items():
            earlier = nodes[:-1]
            unexplained = [n for n in earlier if n not in faulted]
            assert not unexplained, (
                f"job {job_id} ran again after an execution on {unexplained} that no fault "
                f"interrupted: {nodes}"
            )
            repeated = [n for n, k in Counter(earlier).items() if k > 1]
            assert not repeated, f"job {job_id} ran more than once extra for one fault: {nodes}"
    return figures
