"""A user's application: signing up writes a user and enqueues a welcome email in the same
transaction; the welcome job records the email and enqueues an audit job."""

from __future__ import annotations

from typing import Any

import jobrunner
from jobrunner import Job, worker

TABLES = """
CREATE TABLE IF NOT EXISTS users (email text PRIMARY KEY);
CREATE TABLE IF NOT EXISTS sent_emails (email text NOT NULL);
"""


@worker(queue="mail", name="myapp.audit")
async def audit(job: Job) -> None:
    return None


@worker(queue="mail", name="myapp.send_welcome")
async def send_welcome(job: Job) -> None:
    client = jobrunner.current_client()
    await client.pool.execute("INSERT INTO sent_emails (email) VALUES ($1)", job.args["email"])
    await client.insert(audit.new({"email": job.args["email"]}))


async def signup(client: jobrunner.Client, conn: Any, email: str) -> None:
    """The user row and its welcome job commit together, or not at all."""
    await conn.execute("INSERT INTO users (email) VALUES ($1)", email)
    await client.insert(send_welcome.new({"email": email}), conn=conn)
