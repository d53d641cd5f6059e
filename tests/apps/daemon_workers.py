"""Workers for the daemon's tests: each records what happened to it in `daemon_events`."""

from __future__ import annotations

import asyncio

import jobrunner
from jobrunner import Job, worker

EVENTS_TABLE = """
CREATE TABLE IF NOT EXISTS daemon_events (
    job_id   bigint NOT NULL,
    event    text NOT NULL,
    attempt  integer NOT NULL,
    node     text,
    at       timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


async def note(job: Job, event: str) -> None:
    pool = jobrunner.current_client().pool
    node = job.attempted_by[0] if job.attempted_by else None
    await pool.execute(
        "INSERT INTO daemon_events (job_id, event, attempt, node) VALUES ($1, $2, $3, $4)",
        job.id,
        event,
        job.attempt,
        node,
    )


@worker(queue="default", name="daemon.sleep")
async def sleep(job: Job) -> None:
    """Notes 'start', sleeps args.sleep seconds, notes 'end'; notes 'cancelled' if stopped."""
    await note(job, "start")
    try:
        await asyncio.sleep(float(job.args.get("sleep", 0)))
    except asyncio.CancelledError:
        await note(job, "cancelled")
        raise
    await note(job, "end")


@worker(queue="default", name="daemon.fail", max_attempts=3)
async def fail(job: Job) -> None:
    raise RuntimeError(job.args.get("message", "failed on purpose"))
