"""examples/: the FastAPI and Flask apps enqueue in their transaction, and a daemon started
with the examples' worker module sends the receipts."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import asyncpg
import pytest
from fastapi.testclient import TestClient

from tests.helpers import Daemon, eventually


async def test_fastapi_and_flask_examples(
    dsn: str,
    db: asyncpg.Connection,
    daemons: Callable[..., Daemon],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBRUNNER_DATABASE_URL", dsn)
    await db.execute("DROP TABLE IF EXISTS example_orders")
    fastapi_app = importlib.import_module("examples.fastapi_app")
    with TestClient(fastapi_app.app) as http:
        placed = http.post("/orders", params={"item": "book"})
        assert placed.status_code == 200, placed.text
        assert http.post("/orders", params={"item": "out-of-stock"}).status_code == 409

    flask_app = importlib.import_module("examples.flask_app")
    try:
        web = flask_app.app.test_client()
        flask_placed = web.post("/orders?item=lamp")
        assert flask_placed.status_code == 200, flask_placed.text
        assert web.post("/orders?item=out-of-stock").status_code == 409
    finally:
        flask_app.jobs.close()

    # the failed orders left neither a row nor a job
    assert await db.fetchval("SELECT count(*) FROM example_orders") == 2
    assert await db.fetchval("SELECT count(*) FROM jobrunner_jobs") == 2

    await daemons(queues="shop:2", app=["examples.workers"]).start().wait_ready()

    async def receipts_sent() -> bool:
        sent = await db.fetchval("SELECT count(*) FROM example_orders WHERE receipt_sent")
        return bool(sent == 2)

    await eventually(receipts_sent, timeout_s=20)
    await db.execute("DROP TABLE example_orders")
