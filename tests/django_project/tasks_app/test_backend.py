"""Django's Tasks framework on jobrunner: enqueue in the caller's transaction, results read
from the jobs, jobrunner's options, checks and bad input."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, transaction

from jobrunner.contrib.django import JobrunnerBackend, to_jobrunner_priority
from jobrunner.contrib.django import tasks_api as api
from jobrunner.contrib.django.database import schema_errors
from jobrunner.core.errors import InvalidConnection
from jobrunner.db import migrate as _migrate

from ..shop.models import Order
from . import tasks
from .helpers import jobs

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_backend_says_what_it_supports() -> None:
    backend = api.task_backends["default"]
    assert isinstance(backend, JobrunnerBackend)
    assert backend.supports_defer and backend.supports_priority
    assert backend.supports_get_result and backend.supports_async_task


def test_rollback_leaves_no_job() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        order = Order.objects.create(item="book")
        result = tasks.ship.enqueue(order.id)
        assert result.status == api.TaskResultStatus.READY
        raise RuntimeError("the view failed")
    assert Order.objects.count() == 0
    assert jobs() == []


def test_enqueue_maps_args_queue_priority_options_and_run_after() -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    enqueued: list[Any] = []

    def on_enqueued(sender: Any, task_result: Any, **kwargs: Any) -> None:
        enqueued.append((sender, task_result.id, task_result.status))

    api.task_enqueued.connect(on_enqueued)
    try:
        shipped = tasks.ship.enqueue(7, note="gift")
    finally:
        api.task_enqueued.disconnect(on_enqueued)
    assert enqueued == [(JobrunnerBackend, shipped.id, api.TaskResultStatus.READY)]
    failing = tasks.always_fails.using(run_after=later).enqueue(8)
    rows = {row[0]: row for row in jobs()}
    ship_row, fail_row = rows[int(shipped.id)], rows[int(failing.id)]
    assert ship_row[1:] == (
        "available", "default", "tests.django_project.tasks_app.tasks.ship", 4, 3, [],
        {"args": [7], "kwargs": {"note": "gift"}},
    )  # fmt: skip
    assert fail_row[1:7] == ("scheduled", "emails", fail_row[3], 2, 2, ["flaky"])
    assert (shipped.args, shipped.kwargs) == ([7], {"note": "gift"})
    result = tasks.always_fails.get_result(failing.id)
    assert result.status == api.TaskResultStatus.READY
    assert result.task.run_after is None and result.enqueued_at is not None
    assert [to_jobrunner_priority(p) for p in (100, 50, 0, -1, -100)] == [0, 2, 4, 4, 9]


def test_bad_input_raises_the_frameworks_errors() -> None:
    with pytest.raises(api.InvalidTask, match="Queue 'nowhere' is not valid"):
        tasks.ship.using(queue_name="nowhere")
    with pytest.raises(TypeError, match=r"arguments of task .*ship are not JSON"):
        tasks.ship.enqueue(object())
    with pytest.raises(api.TaskResultDoesNotExist):
        tasks.ship.get_result("999999999")
    with pytest.raises(api.TaskResultDoesNotExist):
        tasks.ship.get_result("not-an-id")
    other = tasks.add.enqueue(1, 2)
    with pytest.raises(api.TaskResultMismatch):
        tasks.ship.get_result(other.id)
    with connection.cursor() as cursor:  # a plain jobrunner job, not a Django task's
        cursor.execute(
            "INSERT INTO jobrunner_jobs (worker) VALUES "
            "('tests.django_project.shop.workers.ship_order') RETURNING id"
        )
        plain = cursor.fetchone()[0]
    with pytest.raises(api.TaskResultDoesNotExist, match="is not a Django task"):
        api.task_backends["default"].get_result(str(plain))
    assert len(jobs()) == 2


def test_aenqueue_and_aget_result() -> None:
    async def go() -> tuple[Any, Any]:
        result = await tasks.add.aenqueue(2, 3)
        read = await tasks.add.aget_result(result.id)
        await sync_to_async(lambda: connection.close())()  # the connection of their thread
        return result, read

    enqueued, read = asyncio.run(go())
    assert read.id == enqueued.id and read.args == [2, 3]
    assert read.status == api.TaskResultStatus.READY


def test_system_checks() -> None:
    bad = JobrunnerBackend("lite", {"OPTIONS": {"database": "lite"}})
    assert [e.id for e in bad.check()] == ["jobrunner.E002"]
    missing = JobrunnerBackend("gone", {"OPTIONS": {"database": "gone"}})
    assert [e.id for e in missing.check()] == ["jobrunner.E001"]
    assert list(api.task_backends["default"].check()) == []
    with pytest.raises(InvalidConnection, match="needs a PostgreSQL database"):
        bad.enqueue(tasks.ship, [1], {})
    assert schema_errors("default") == []


def test_pending_jobrunner_migrations_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_migrate, "LATEST", _migrate.LATEST + 1)
    [warning] = schema_errors("default")
    assert warning.id == "jobrunner.W001" and "migrate" in warning.hint


def test_bad_options_are_one_clear_error() -> None:
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="unknown: retries"):
        JobrunnerBackend("x", {"OPTIONS": {"retries": 3}})
    with pytest.raises(ImproperlyConfigured, match="max_attempts"):
        JobrunnerBackend("x", {"OPTIONS": {"max_attempts": 0}})


def test_per_task_options_on_each_django_version() -> None:
    from jobrunner.contrib.django import job_options

    if api.FRAMEWORK == "django_tasks":  # the backport's @task passes options to task_class
        from django_tasks import task

        made = task(max_attempts=4, timeout=5)(tasks.ship.func)
        assert (made.max_attempts, made.timeout) == (4, 5)
    given = job_options(max_attempts=4, tags=["a"])(tasks.ship)
    assert (given.max_attempts, given.tags, given.timeout) == (4, ("a",), None)
    assert given.using(priority=10).max_attempts == 4
    with pytest.raises(api.InvalidTask, match="max_attempts"):
        job_options(max_attempts=0)(tasks.ship)
    with pytest.raises(api.InvalidTask, match="above @task"):
        job_options(max_attempts=2)(tasks.ship.func)


def test_a_unique_task_enqueued_twice_is_one_job_in_and_out_of_transactions() -> None:
    from jobrunner import Unique
    from jobrunner.contrib.django import job_options

    once = job_options(unique=Unique(period=60))(tasks.ship)
    with transaction.atomic():
        first = once.enqueue(5, note="a")
        again = once.enqueue(5, note="a")
    later = once.enqueue(5, note="a")
    other = once.enqueue(6)
    assert first.id == again.id == later.id != other.id
    assert len(jobs()) == 2
