"""Example workers that `make run` loads (config/jobrunner.toml: app = ["jobrunner.examples"])."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import structlog

from jobrunner.core.job import Job, Snooze
from jobrunner.core.worker import worker
from jobrunner.thread_client import current_client

log = structlog.get_logger("jobrunner.examples")


@worker(queue="default")
async def greet(job: Job) -> None:
    """Says hello, then chains a welcome email."""
    log.info("example.greet", name=job.args.get("name", "world"))
    await current_client().insert(send_welcome.new({"name": job.args.get("name", "world")}))


@worker(queue="emails", max_attempts=5)
async def send_welcome(job: Job) -> Snooze | None:
    """Pretends to send an email; the mail server is sometimes busy."""
    await asyncio.sleep(0.05)
    if random.random() < 0.2:
        return Snooze(5)
    log.info("example.sent", to=job.args.get("name"))
    return None


@dataclass
class ReportArgs:
    name: str
    lines: int = 3


@worker(queue="default", args=ReportArgs)
def write_report(job: Job, args: ReportArgs) -> None:
    """A sync worker (a plain def, run in a thread) with typed args: blocking is fine here."""
    for _ in range(args.lines):
        if job.cancelled():  # timed out, cancelled or shutting down: stop early
            return
        time.sleep(0.01)
    log.info("example.report", name=args.name, lines=args.lines)
