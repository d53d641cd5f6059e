"""How to test an application that uses jobrunner, written as its users would.

The application below signs users up and sends them a welcome email from a job. Its tests
show the four patterns of `jobrunner.testing`: run a worker directly with `perform_job`,
check that code enqueued a job with `assert_enqueued`, run the queue with `drain_queue`, and
let jobs run as they are inserted with an inline client. The `jobrunner_client` and
`jobrunner_inline_client` fixtures come from the pytest plugin (`jobrunner[testing]`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import jobrunner
from jobrunner import Discard, Job, Snooze, worker
from jobrunner.testing import (
    all_enqueued,
    assert_enqueued,
    drain_queue,
    perform_job,
    refute_enqueued,
)

# --- the application under test --------------------------------------------------------------

OUTBOX: list[str] = []  # stands in for the email service
USERS = {1: "ada@example.com", 2: "grace@example.com"}


@worker(queue="emails", max_attempts=5)
async def send_welcome(job: Job) -> Snooze | Discard | None:
    email = USERS.get(job.args["user_id"])
    if email is None:
        return Discard("no such user")
    if job.args.get("provider_down"):
        raise ConnectionError("email provider unreachable")
    if job.args.get("quiet_hours"):
        return Snooze(3600)
    OUTBOX.append(email)
    return None


@worker(queue="emails")
async def remind(job: Job) -> None:
    OUTBOX.append(f"reminder for {job.args['user_id']}")


@worker(queue="default")
async def onboard(job: Job) -> None:
    """Chains the welcome email after the account is set up."""
    await jobrunner.current_client().insert(send_welcome.new({"user_id": job.args["user_id"]}))


async def sign_up(client: jobrunner.Client, user_id: int) -> None:
    await client.insert(send_welcome.new({"user_id": user_id}))
    await client.insert(remind.new({"user_id": user_id}, schedule_in=7 * 24 * 3600))


# --- the tests ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _empty_outbox() -> None:
    OUTBOX.clear()


@pytest.fixture
def jobrunner_dsn(dsn: str) -> str:
    """Point the plugin at this suite's database. Without this fixture the plugin uses
    JOBRUNNER_TEST_DSN, or a database of its own on the embedded PostgreSQL."""
    return dsn


async def test_a_worker_runs_without_a_database() -> None:
    assert await perform_job(send_welcome, {"user_id": 1}) is None
    assert OUTBOX == ["ada@example.com"]


async def test_a_worker_outcome_is_what_it_returns() -> None:
    assert await perform_job(send_welcome, {"user_id": 99}) == Discard("no such user")
    assert await perform_job(send_welcome, {"user_id": 1, "quiet_hours": True}) == Snooze(3600)


async def test_a_worker_error_propagates() -> None:
    with pytest.raises(ConnectionError):
        await perform_job(send_welcome, {"user_id": 1, "provider_down": True}, attempt=5)


async def test_args_that_could_not_be_inserted_fail_the_test() -> None:
    with pytest.raises(jobrunner.InvalidJob):
        await perform_job(send_welcome, {"user_id": {1, 2}})


async def test_sign_up_enqueues_a_welcome_and_a_reminder(
    jobrunner_client: jobrunner.Client,
) -> None:
    await sign_up(jobrunner_client, 1)

    await assert_enqueued(
        jobrunner_client, worker=send_welcome, args={"user_id": 1}, queue="emails"
    )
    in_a_week = datetime.now(UTC) + timedelta(days=7)
    await assert_enqueued(
        jobrunner_client,
        worker=remind,
        args={"user_id": 1},
        scheduled_at=(in_a_week, timedelta(minutes=1)),
    )
    await refute_enqueued(jobrunner_client, worker=send_welcome, args={"user_id": 2})
    assert len(await all_enqueued(jobrunner_client, queue="emails")) == 2
    assert OUTBOX == []  # manual mode: nothing ran


async def test_draining_the_queue_sends_the_emails(jobrunner_client: jobrunner.Client) -> None:
    await sign_up(jobrunner_client, 1)
    await sign_up(jobrunner_client, 2)

    result = await drain_queue(jobrunner_client, "emails")

    assert result.as_dict() == {
        "completed": 2,
        "failure": 0,
        "snoozed": 0,
        "cancelled": 0,
        "discarded": 0,
    }
    assert OUTBOX == ["ada@example.com", "grace@example.com"]
    await assert_enqueued(jobrunner_client, worker=remind, state="scheduled")  # next week's


async def test_draining_with_scheduled_runs_future_jobs_too(
    jobrunner_client: jobrunner.Client,
) -> None:
    await sign_up(jobrunner_client, 1)

    result = await drain_queue(jobrunner_client, "emails", with_scheduled=True)

    assert result.completed == 2
    assert OUTBOX == ["ada@example.com", "reminder for 1"]


async def test_a_failed_job_waits_for_its_retry(jobrunner_client: jobrunner.Client) -> None:
    await jobrunner_client.insert(send_welcome.new({"user_id": 1, "provider_down": True}))

    result = await drain_queue(jobrunner_client, "emails")

    assert result.failure == 1
    assert isinstance(result.exceptions[0], ConnectionError)
    await assert_enqueued(jobrunner_client, worker=send_welcome, state="retryable")


async def test_chained_jobs_run_with_recursion(jobrunner_client: jobrunner.Client) -> None:
    await jobrunner_client.insert(onboard.new({"user_id": 2}))

    await drain_queue(jobrunner_client, "default")
    await assert_enqueued(jobrunner_client, worker=send_welcome, args={"user_id": 2})
    await drain_queue(jobrunner_client, "emails", with_recursion=True)

    assert OUTBOX == ["grace@example.com"]


async def test_inline_mode_runs_jobs_as_they_are_inserted(
    jobrunner_inline_client: jobrunner.Client,
) -> None:
    job = await jobrunner_inline_client.insert(send_welcome.new({"user_id": 2}))

    assert job.state is jobrunner.JobState.COMPLETED
    assert OUTBOX == ["grace@example.com"]


# --- a plain `def` test with the sync client -----------------------------------------------


def sign_up_sync(client: jobrunner.SyncClient, user_id: int) -> None:
    client.insert(send_welcome.new({"user_id": user_id}))


def test_signing_up_enqueues_a_welcome_email_sync(
    jobrunner_sync_client: jobrunner.SyncClient,
) -> None:
    sign_up_sync(jobrunner_sync_client, 1)
    [job] = jobrunner_sync_client.list_jobs(worker=send_welcome.name)
    assert job.args == {"user_id": 1} and job.queue == "emails"
