"""Flask with a psycopg connection: the order and its receipt job commit together.

flask --app examples.flask_app run      # then: curl -XPOST localhost:5000/orders?item=book
"""

from __future__ import annotations

import atexit
from typing import Any

import psycopg
from flask import Flask, abort, request

import jobrunner

from .workers import ORDERS, send_receipt

jobs = jobrunner.connect_sync().open()  # one per process: JOBRUNNER_DATABASE_URL, else embedded
atexit.register(jobs.close)

app = Flask(__name__)
with psycopg.connect(jobs.dsn) as setup:
    setup.execute(ORDERS)


@app.post("/orders")
def create_order() -> dict[str, Any]:
    item = request.args["item"]
    with psycopg.connect(jobs.dsn) as conn:  # commits at the end of the block, or rolls back
        row = conn.execute(
            "INSERT INTO example_orders (item) VALUES (%s) RETURNING id", (item,)
        ).fetchone()
        assert row is not None
        job = jobs.insert(send_receipt.new({"order_id": row[0]}), conn=conn)
        if item == "out-of-stock":  # fails after the insert: the job rolls back too
            abort(409, "out of stock")
    return {"order_id": row[0], "job_id": job.id}
