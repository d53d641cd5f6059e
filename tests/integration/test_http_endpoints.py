"""The HTTP endpoints of an embedded Runner, and what they cost when nobody asks for them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from jobrunner import Job, worker
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
        "import sys, jobrunner, jobrunner.cli, jobrunner.runner, jobrunner._executor\n"
        "extras = ('opentelemetry', 'prometheus_client')\n"
        "loaded = [m for m in sys.modules if m.startswith(extras)]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
