"""Sync workers for the daemon's tests: each records what happened to it in `sync_events`."""

from __future__ import annotations

import time
from typing import Any

import jobrunner
from jobrunner import Cancel, Job, worker

EVENTS_TABLE = """
CREATE TABLE IF NOT EXISTS sync_events (
    job_id   bigint NOT NULL,
    event    text NOT NULL,
    attempt  integer NOT NULL,
    thread   text,
    at       timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


def note(job: Job, event: str) -> None:
    """Record `event` from a sync job's thread, through the runner's loop."""
    import threading

    tc = jobrunner.ThreadClient.current()
    tc.call(
        tc.client.pool.execute(
            "INSERT INTO sync_events (job_id, event, attempt, thread) VALUES ($1, $2, $3, $4)",
            job.id,
            event,
            job.attempt,
            threading.current_thread().name,
        )
    )


def noted(job: Job, event: str, attempt: int) -> bool:
    tc = jobrunner.ThreadClient.current()
    found: Any = tc.call(
        tc.client.pool.fetchval(
            "SELECT count(*) FROM sync_events WHERE job_id = $1 AND event = $2 AND attempt = $3",
            job.id,
            event,
            attempt,
        )
    )
    return bool(found)


@worker(queue="sync", name="sync.block")
def block(job: Job) -> None:
    """Notes 'start', blocks its thread for args.sleep seconds (attempt 1 only, unless
    args.every), notes 'end'."""
    note(job, "start")
    if job.attempt == 1 or job.args.get("every"):
        time.sleep(float(job.args.get("sleep", 0)))
    note(job, "end")


@worker(queue="async", name="sync.ping")
async def ping(job: Job) -> None:
    """An async job: notes 'start' when it begins."""
    await jobrunner.current_client().pool.execute(
        "INSERT INTO sync_events (job_id, event, attempt) VALUES ($1, 'start', $2)",
        job.id,
        job.attempt,
    )


@worker(queue="sync", name="sync.late", max_attempts=3)
class Late:
    """Attempt 1 outlives its 1 s timeout and then returns normally; attempt 2 waits until
    that late return happened, then cancels the job."""

    def timeout(self, job: Job) -> float:
        return 1.0 if job.attempt == 1 else 30.0

    def perform(self, job: Job) -> Cancel | None:
        if job.attempt == 1:
            note(job, "start")
            time.sleep(float(job.args.get("sleep", 3)))
            note(job, "late-return")
            return None
        note(job, "start")
        deadline = time.monotonic() + 30
        while not noted(job, "late-return", 1) and time.monotonic() < deadline:
            time.sleep(0.05)
        return Cancel("second attempt")

    def backoff(self, job: Job) -> float:
        return 0.0


@worker(queue="sync", name="sync.follow_up")
def follow_up(job: Job) -> None:
    """Enqueues a ping from its thread, and records the id it got."""
    client: Any = jobrunner.current_client()  # a ThreadClient: no await in a thread
    inserted = client.insert(ping.new({"from": job.id}))
    note(job, f"inserted {inserted.id}")
