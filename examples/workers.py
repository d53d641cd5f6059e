"""The examples' worker: `jobrunner start --app examples.workers --queues shop:5`."""

from __future__ import annotations

import jobrunner
from jobrunner import Job, worker

ORDERS = """
CREATE TABLE IF NOT EXISTS example_orders (
    id            bigserial PRIMARY KEY,
    item          text NOT NULL,
    receipt_sent  boolean NOT NULL DEFAULT false
)
"""


@worker(queue="shop", max_attempts=5, name="examples.send_receipt")
async def send_receipt(job: Job) -> None:
    """Sends the order's receipt (here: marks it sent)."""
    pool = jobrunner.current_client().pool
    await pool.execute(
        "UPDATE example_orders SET receipt_sent = true WHERE id = $1", job.args["order_id"]
    )
