"""The rollback-per-test pattern: every test runs in a transaction rolled back afterwards."""

from __future__ import annotations

import pytest
from myapp import audit, send_welcome, signup

from jobrunner.testing import all_enqueued, assert_enqueued, drain_queue, refute_enqueued

pytestmark = pytest.mark.asyncio


async def test_signup_enqueues_a_welcome_in_its_transaction(jobrunner_client, jobrunner_conn):
    await signup(jobrunner_client, jobrunner_conn, "ada@example.com")
    await assert_enqueued(
        jobrunner_client,
        worker=send_welcome,
        args={"email": "ada@example.com"},
        conn=jobrunner_conn,
    )
    await refute_enqueued(jobrunner_client, worker=send_welcome)  # not committed: not outside


async def test_draining_in_the_transaction_runs_the_job_and_its_follow_up(
    jobrunner_client, jobrunner_conn
):
    await signup(jobrunner_client, jobrunner_conn, "grace@example.com")
    first = await drain_queue(jobrunner_client, "mail", conn=jobrunner_conn)
    assert first.completed == 1
    await assert_enqueued(jobrunner_client, worker=audit, conn=jobrunner_conn)
    sent = await jobrunner_conn.fetchval("SELECT count(*) FROM sent_emails")
    assert sent == 1
    again = await drain_queue(jobrunner_client, "mail", conn=jobrunner_conn)
    assert again.completed == 1
    assert await all_enqueued(jobrunner_client, conn=jobrunner_conn) == []


async def test_nothing_of_the_other_tests_is_left(jobrunner_client):
    assert await all_enqueued(jobrunner_client, state=["available", "completed"]) == []
    assert await jobrunner_client.pool.fetchval("SELECT count(*) FROM users") == 0
    assert await jobrunner_client.pool.fetchval("SELECT count(*) FROM sent_emails") == 0


@pytest.mark.parametrize("n", range(4))
async def test_committed_jobs_are_this_workers_own(jobrunner_client, n):
    """Committed jobs, emptied after each test: another worker on the same tables would
    see them, or empty them under this test."""
    await jobrunner_client.insert_all([send_welcome.new({"email": f"{n}-{i}@x"}) for i in range(3)])
    assert len(await all_enqueued(jobrunner_client)) == 3
    result = await drain_queue(jobrunner_client, "mail", with_recursion=True)
    assert result.completed == 6
    assert await all_enqueued(jobrunner_client) == []


@pytest.mark.asyncio(loop_scope="module")
async def test_a_marker_with_its_own_loop_scope(jobrunner_client, jobrunner_conn):
    await signup(jobrunner_client, jobrunner_conn, "marker@example.com")
    assert (await drain_queue(jobrunner_client, "mail", conn=jobrunner_conn)).completed == 1
