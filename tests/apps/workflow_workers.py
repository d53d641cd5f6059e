"""Workers of the workflow, batch and chain scenarios run by daemon subprocesses. Each run
records its start and end (database clock) and process in `wf_runs`."""

from __future__ import annotations

import asyncio
import os
import time

import jobrunner
from jobrunner import Job, Record, worker

RUNS_TABLE = """
CREATE TABLE IF NOT EXISTS wf_runs (
    job_id       bigint NOT NULL,
    label        text NOT NULL,
    pid          integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz
);
TRUNCATE wf_runs
"""


async def _run(job: Job) -> None:
    pool = jobrunner.current_client().pool
    label = str(job.args.get("label", ""))
    await pool.execute(
        "INSERT INTO wf_runs (job_id, label, pid) VALUES ($1, $2, $3)", job.id, label, os.getpid()
    )
    until = job.args.get("until")  # an epoch time: every job sleeping to it ends at once
    if until is not None:
        await asyncio.sleep(max(0.0, float(until) - time.time()))
    await asyncio.sleep(float(job.args.get("sleep", 0)))
    await pool.execute(
        "UPDATE wf_runs SET finished_at = clock_timestamp() WHERE job_id = $1 AND pid = $2 "
        "AND finished_at IS NULL",
        job.id,
        os.getpid(),
    )


@worker(queue="wfe", name="wfe.step", max_attempts=5)
async def step(job: Job) -> Record:
    await _run(job)
    return Record({"label": job.args.get("label")})


@worker(queue="wfe", name="wfe.callback", max_attempts=5)
async def callback(job: Job) -> None:
    return None
