"""Sync workers with a database: inline mode, drain_queue, an in-process runner's threads,
typed args from `jobrunner enqueue`, stored args that no longer fit."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

import jobrunner
from jobrunner import Job, JobState, worker
from jobrunner.core.config import Settings
from jobrunner.testing import drain_queue
from tests.helpers import eventually, run_cli

THREADS: list[str] = []


@dataclass
class Thumb:
    image_id: int
    size: int = 64


@worker(queue="thumbs", name="sync_it.thumb", args=Thumb)
def thumb(job: Job, args: Thumb) -> None:
    THREADS.append(threading.current_thread().name)
    if args.size == 0:
        raise ValueError("size 0")
    if args.image_id > 0:
        client: Any = jobrunner.current_client()
        client.insert(thumb.new({"image_id": args.image_id - 1, "size": args.size}))


@pytest.fixture(autouse=True)
def _clear() -> None:
    THREADS.clear()


@pytest.fixture
async def inline_client(db: asyncpg.Connection, settings: Settings) -> AsyncIterator[Any]:
    async with jobrunner.connect(settings=settings, testing="inline") as connected:
        yield connected


async def test_inline_mode_runs_sync_jobs_and_their_follow_ups(inline_client: Any) -> None:
    done = await inline_client.insert(thumb.new({"image_id": 2}))
    assert done.state is JobState.COMPLETED
    assert len(THREADS) == 3 and all(t.startswith("jobrunner-sync-") for t in THREADS)
    failed = await inline_client.insert(thumb.new(Thumb(0, size=0)))
    assert failed.state is JobState.RETRYABLE
    assert failed.errors[0].error == "ValueError: size 0"


async def test_drain_queue_runs_sync_jobs(client: jobrunner.Client) -> None:
    await client.insert_all([thumb.new({"image_id": 1}), thumb.new({"image_id": 0, "size": 0})])
    result = await drain_queue(client, "thumbs", with_recursion=True)
    assert result.as_dict()["completed"] == 2 and result.as_dict()["failure"] == 1
    assert len(THREADS) == 3  # the follow-up of image 1 ran too


async def test_a_runner_runs_sync_jobs_in_its_own_threads(
    client: jobrunner.Client, settings: Settings
) -> None:
    job = await client.insert(thumb.new({"image_id": 0}))
    async with jobrunner.Runner(client, {"thumbs": 2}, settings=settings, threads=3) as runner:
        assert runner.threads.size == 3

        async def completed() -> bool:
            found = await client.get_job(job.id)
            assert found is not None and found.state is JobState.COMPLETED
            return True

        await eventually(completed, 10)
    assert THREADS == ["jobrunner-sync-0"]


async def test_stored_args_that_no_longer_fit_are_retried_as_a_failure(
    client: jobrunner.Client, db: asyncpg.Connection, settings: Settings
) -> None:
    """A job stored before the args type changed: the attempt fails, the daemon goes on."""
    old = await client.insert(
        jobrunner.NewJob(worker="sync_it.thumb", args={"id": 5}, queue="thumbs")
    )
    good = await client.insert(thumb.new({"image_id": 0}))
    async with jobrunner.Runner(client, {"thumbs": 2}, settings=settings):

        async def settled() -> bool:
            bad, fine = await client.get_job(old.id), await client.get_job(good.id)
            assert bad is not None and bad.state is JobState.RETRYABLE
            assert fine is not None and fine.state is JobState.COMPLETED
            return True

        await eventually(settled, 10)
    failed = await client.get_job(old.id)
    assert failed is not None
    assert failed.errors[0].error == (
        "InvalidJob: invalid args for worker 'sync_it.thumb': unknown field 'id'"
    )


def test_enqueue_checks_typed_args_naming_the_field(dsn: str, db: asyncpg.Connection) -> None:
    app = ["--app", "tests.apps.typed_workers"]
    bad = run_cli("enqueue", "typed.resize", "--args", '{"image_id": "x"}', *app, dsn=dsn)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == (
        "error: invalid args for worker 'typed.resize': field 'image_id' must be int, got str 'x'"
    )
    good = run_cli("enqueue", "typed.resize", "--args", '{"image_id": 3}', *app, "--json", dsn=dsn)
    assert good.returncode == 0, good.stderr
    assert '"width": 100' in good.stdout


async def test_nothing_is_inserted_for_bad_typed_args(db: asyncpg.Connection, dsn: str) -> None:
    run_cli("enqueue", "typed.resize", "--args", "{}", "--app", "tests.apps.typed_workers", dsn=dsn)
    assert await db.fetchval("SELECT count(*) FROM jobrunner_jobs") == 0
