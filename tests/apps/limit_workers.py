"""Workers for the queue limits' tests: each records when it started and ended in `limit_log`."""

from __future__ import annotations

import asyncio

import jobrunner
from jobrunner import Job, worker

LOG_TABLE = """
CREATE TABLE IF NOT EXISTS limit_log (
    job_id      bigint NOT NULL,
    attempt     integer NOT NULL,
    queue       text NOT NULL,
    part        text,
    node        text,
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended_at    timestamptz
)
"""


@worker(queue="limited", name="limits.hold")
async def hold(job: Job) -> None:
    """Records its start, sleeps args.sleep seconds, records its end."""
    pool = jobrunner.current_client().pool
    await pool.execute(
        "INSERT INTO limit_log (job_id, attempt, queue, part, node) VALUES ($1, $2, $3, $4, $5)",
        job.id,
        job.attempt,
        job.queue,
        None if "customer" not in job.args else str(job.args["customer"]),
        job.attempted_by[0] if job.attempted_by else None,
    )
    await asyncio.sleep(float(job.args.get("sleep", 0)))
    await pool.execute(
        "UPDATE limit_log SET ended_at = clock_timestamp() WHERE job_id = $1 AND attempt = $2",
        job.id,
        job.attempt,
    )
