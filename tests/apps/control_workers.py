"""Workers for the control tests: each run is recorded in `control_runs` with its start and
end, so a test can see how many ran at once on each node."""

from __future__ import annotations

import asyncio

import jobrunner
from jobrunner import Job, worker

RUNS_TABLE = """
CREATE TABLE IF NOT EXISTS control_runs (
    job_id      bigint NOT NULL,
    node        text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended_at    timestamptz,
    cancelled   boolean NOT NULL DEFAULT false
)
"""

# For each node: the most runs that were in progress at the same moment.
MAX_CONCURRENCY = """
SELECT r.node, max((
    SELECT count(*) FROM control_runs AS o
    WHERE o.node = r.node AND o.job_id >= $1 AND o.started_at <= r.started_at
      AND (o.ended_at IS NULL OR o.ended_at > r.started_at)
)) AS n
FROM control_runs AS r
WHERE r.job_id >= $1
GROUP BY r.node
"""


@worker(queue="default", name="control.slow")
async def slow(job: Job) -> None:
    """Records its start, sleeps args.sleep seconds (default 1), records its end."""
    pool = jobrunner.current_client().pool
    await pool.execute(
        "INSERT INTO control_runs (job_id, node) VALUES ($1, $2)", job.id, job.attempted_by[0]
    )
    try:
        await asyncio.sleep(float(job.args.get("sleep", 1)))
    except asyncio.CancelledError:
        # Shielded: the record is written even if the task is cancelled again meanwhile.
        await asyncio.shield(
            pool.execute(
                "UPDATE control_runs SET cancelled = true, ended_at = clock_timestamp() "
                "WHERE job_id = $1 AND ended_at IS NULL",
                job.id,
            )
        )
        raise
    await pool.execute(
        "UPDATE control_runs SET ended_at = clock_timestamp() "
        "WHERE job_id = $1 AND ended_at IS NULL",
        job.id,
    )


@worker(queue="default", name="control.snooze")
async def snooze(job: Job) -> jobrunner.Snooze:
    """Snoozes for an hour, every time."""
    return jobrunner.Snooze(3600)


@worker(queue="default", name="control.cancel")
async def cancel(job: Job) -> jobrunner.Cancel:
    """Cancels itself."""
    return jobrunner.Cancel("not needed")


GATE_TABLE = "CREATE TABLE IF NOT EXISTS control_gate (opened_at timestamptz NOT NULL)"


@worker(queue="default", name="control.gate")
async def gate(job: Job) -> None:
    """Runs until a row appears in `control_gate`: holds its node's slot meanwhile."""
    pool = jobrunner.current_client().pool
    while not await pool.fetchval("SELECT EXISTS (SELECT 1 FROM control_gate)"):
        await asyncio.sleep(0.05)
