"""/readyz follows the database: 503 while PostgreSQL is down, 200 once it is back."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.e2e.test_observability import http_get, http_port
from tests.faults.conftest import prepare_database

pytestmark = pytest.mark.faults


async def test_readyz_turns_503_while_the_database_is_down(own_server, fault_daemons) -> None:
    """A real stop and start of the server: /readyz answers 503 naming the database (and
    the lost listener) while it is down and 200 after it restarts; /healthz stays 200, as
    the node itself is fine and restarting it would not help."""
    await prepare_database(own_server)
    daemon = fault_daemons(own_server.dsn("jobrunner"), args=("--metrics", "127.0.0.1:0"))
    daemon.start()
    await daemon.wait_ready()
    base = f"http://127.0.0.1:{await http_port(daemon)}"

    async def ready(expected: int) -> dict[str, object]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while True:
            status, body = await http_get(f"{base}/readyz")
            if status == expected or loop.time() > deadline:
                assert status == expected, body
                return json.loads(body)  # type: ignore[no-any-return]
            await asyncio.sleep(0.1)

    assert (await ready(200))["checks"] == {"database": "ok", "listener": "ok"}
    await asyncio.to_thread(own_server.stop, "fast")
    down = await ready(503)
    assert down["status"] == "fail"
    assert down["checks"]["database"] != "ok"  # type: ignore[index]
    status, _ = await http_get(f"{base}/healthz")
    assert status == 200
    await asyncio.to_thread(own_server.start)
    assert (await ready(200))["checks"] == {"database": "ok", "listener": "ok"}
    assert await daemon.stop() == 0
    assert not daemon.events("http.handler_failed")
