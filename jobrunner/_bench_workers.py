"""Workers the benchmark's daemons run (`--app jobrunner._bench_workers`)."""

from __future__ import annotations

import os
import time
from typing import IO

from jobrunner.core.job import Job
from jobrunner.core.worker import worker

QUEUE = "bench"
STAMPS_ENV = "JOBRUNNER_BENCH_STAMPS"

# Opened at import (in the daemon), so a job's body only writes a line.
_stamps: IO[str] | None = (
    open(os.environ[STAMPS_ENV], "a", buffering=1) if STAMPS_ENV in os.environ else None
)


@worker(queue=QUEUE, name="bench.noop")
async def noop(job: Job) -> None:
    """Does nothing: what is measured is the queue's own cost."""


@worker(queue=QUEUE, name="bench.sync_noop")
def sync_noop(job: Job) -> None:
    """Does nothing, in a thread of the runner's pool: the cost of the hand-over."""


@worker(queue=QUEUE, name="bench.stamp")
async def stamp(job: Job) -> None:
    """Writes `n started_at` (time.time(), the clock the inserter reads) to the stamps file."""
    started = time.time()
    if _stamps is None:
        raise RuntimeError(f"{STAMPS_ENV} is not set")
    _stamps.write(f"{job.args['n']} {started!r}\n")
