"""The HTTP endpoints of an embedded Runner, and what they cost when nobody asks for them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from jobrunner import Job, worker
from jobrunner.db import queries as _queries
from tests.e2e.test_observability import http_get
from tests.helpers import ROOT, eventually

QUEUE = "endpoints"


async def test_readyz_says_stopping_while_running_jobs_drain(client, make_runner) -> None:
    """During a graceful stop the node is alive (/healthz 200: restarting it would cut its
    jobs short) but not ready (/readyz 503), until the server closes last."""
    release = asyncio.Event()
    started = asyncio.Event()

    @worker(queue=QUEUE)
    async def slow(job: Job) -> None:
        started.set()
        await release.wait()

    async with make_runner({QUEUE: 1}, http_listen="127.0.0.1:0") as runner:
        port = runner.http_port
        assert port
        base = f"http://127.0.0.1:{port}"
        status, body = await http_get(f"{base}/healthz")
        assert (status, json.loads(body)["queues"]) == (200, [QUEUE])
        await client.insert(slow.new({}))
        await asyncio.wait_for(started.wait(), 10)
        stopping = asyncio.create_task(runner.stop(grace=10))

        async def unready() -> bool:
            status, body = await http_get(f"{base}/healthz")
            assert status == 200 and json.loads(body)["state"] == "stopping", body
            status, body = await http_get(f"{base}/readyz")
            assert status == 503 and json.loads(body)["checks"]["node"] == "stopping", body
            return True

        await eventually(unready)
        release.set()
        await asyncio.wait_for(stopping, 10)
        assert runner.http_port is None


def test_importing_jobrunner_loads_no_tracing_or_metrics_library() -> None:
    """Without [http] or instrument(), neither prometheus_client nor OpenTelemetry is
    imported by the daemon's modules: the extras cost nothing unless used."""
    code = (
        "import sys, jobrunner, jobrunner.cli, jobrunner.daemon.runner, jobrunner.engine.executor\n"
        "extras = ('opentelemetry', 'prometheus_client')\n"
        "loaded = [m for m in sys.modules if m.startswith(extras)]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


async def test_unfinished_counts_agree_with_the_full_count(client, db) -> None:
    """The cheap count (one branch per partial index) finds what the full GROUP BY finds
    for every state that has not finished."""

    @worker(queue=QUEUE)
    async def counted(job: Job) -> None: ...

    jobs = await client.insert_all([counted.new({"n": i}) for i in range(8)])
    await client.insert_all(
        [counted.new({"n": i}, queue="other", schedule_in=60) for i in range(2)]
    )
    states = ("executing", "retryable", "completed", "discarded", "cancelled")
    for job, state in zip(jobs[: len(states)], states, strict=True):
        await db.execute("UPDATE jobrunner_jobs SET state = $2 WHERE id = $1", job.id, state)
    full = await _queries.count_jobs(client.pool)
    unfinished = await _queries.count_unfinished_jobs(client.pool)
    finished = {"completed", "discarded", "cancelled"}
    assert unfinished == {
        queue: {s: n for s, n in states.items() if s not in finished}
        for queue, states in full.items()
    }
    assert unfinished == {
        QUEUE: {"available": 3, "executing": 1, "retryable": 1},
        "other": {"scheduled": 2},
    }
