"""Django tasks run by `manage.py jobrunner start` (a subprocess, as a user runs it): results,
retries and errors, connections, signals, and the command's own errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import pytest
from django.db import connection, transaction

from jobrunner.contrib.django import execution
from jobrunner.contrib.django import tasks_api as api
from jobrunner.db import migrate as _migrate

from ..shop.models import Order
from . import tasks
from .helpers import PROJECT, ROOT, env, job_of, manage, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_commit_runs_tasks_in_manage_py_jobrunner_start(daemon: Any) -> None:
    with transaction.atomic():
        order = Order.objects.create(item="book")
        shipped = tasks.ship.enqueue(order.id, note="today")
    failing = tasks.always_fails.enqueue(order.id)
    added = tasks.add.enqueue(2, 3)
    attempt = tasks.attempt_of.enqueue()
    wait_for(shipped, lambda r: r.is_finished, daemon)
    assert shipped.status == api.TaskResultStatus.SUCCESSFUL
    assert shipped.attempts == 1 and shipped.errors == []
    assert shipped.return_value["order_id"] == order.id
    assert shipped.return_value["thread"] != "MainThread"  # a sync task runs in a thread
    assert shipped.finished_at >= shipped.started_at >= shipped.enqueued_at
    order.refresh_from_db()
    assert (order.shipped, order.item) == (True, "shipped today")
    wait_for(failing, lambda r: r.is_finished, daemon)
    assert failing.status == api.TaskResultStatus.FAILED
    assert failing.attempts == 2 and len(failing.errors) == 2
    assert failing.errors[0].exception_class_path == "builtins.LookupError"
    assert failing.errors[-1].exception_class is LookupError
    assert "no mailbox for order" in failing.errors[-1].traceback
    with pytest.raises(ValueError, match="failed"):
        failing.return_value  # noqa: B018
    wait_for(added, lambda r: r.is_finished, daemon)
    wait_for(attempt, lambda r: r.is_finished, daemon)
    assert added.status == attempt.status == api.TaskResultStatus.SUCCESSFUL
    assert (added.return_value, attempt.return_value) == (5, 1)


def test_a_sync_task_using_the_orm_leaves_no_connection_open(daemon: Any) -> None:
    result = tasks.open_connection.enqueue()
    wait_for(result, lambda r: r.is_finished, daemon)
    assert result.status == api.TaskResultStatus.SUCCESSFUL
    deadline = time.monotonic() + 10
    while _connections_that_ran("shop_order"):
        assert time.monotonic() < deadline, "the task's connection was left open"
        time.sleep(0.05)


def _connections_that_ran(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND query LIKE %s",
            [f"%{table}%"],
        )
        return int(cursor.fetchone()[0])


def test_the_worker_sends_the_frameworks_signals_around_each_attempt() -> None:
    seen: list[tuple[str, Any, Any]] = []

    def started(sender: Any, task_result: Any, **kwargs: Any) -> None:
        seen.append(("started", task_result.status, None))

    def finished(sender: Any, task_result: Any, **kwargs: Any) -> None:
        seen.append(("finished", task_result.status, sys.exc_info()[0]))

    api.task_started.connect(started)
    api.task_finished.connect(finished)
    try:
        ship = execution.resolve("tests.django_project.tasks_app.tasks.ship")
        failing = execution.resolve("tests.django_project.tasks_app.tasks.always_fails")
        assert ship is not None and failing is not None and ship.sync
        assert failing.max_attempts == 2 and failing.backoff(job_of(failing, 1)) == 0.0
        assert (ship.max_attempts, ship.timeout, failing.timeout) == (3, 30, 30)
        order = Order.objects.create(item="book")
        recorded = ship._perform(job_of(ship, 1, args=[order.id]))
        assert recorded.value["order_id"] == order.id  # a Record: the job's result
        with pytest.raises(LookupError):
            failing._perform(job_of(failing, 1, args=[order.id]))
        with pytest.raises(LookupError):
            failing._perform(job_of(failing, 2, args=[order.id]))
    finally:
        api.task_started.disconnect(started)
        api.task_finished.disconnect(finished)
    s = api.TaskResultStatus
    assert seen == [
        ("started", s.RUNNING, None), ("finished", s.SUCCESSFUL, None),
        ("started", s.RUNNING, None), ("finished", s.READY, LookupError),
        ("started", s.RUNNING, None), ("finished", s.FAILED, LookupError),
    ]  # fmt: skip
    assert execution.resolve("tests.django_project.shop.models.Order") is None
    assert execution.resolve("no.such.module") is None


def test_a_return_value_that_is_not_json_fails_the_attempt() -> None:
    worker = execution.resolve("tests.django_project.tasks_app.tasks.returns_a_set")
    assert worker is not None
    with pytest.raises(ValueError, match="JSON"):
        worker._perform(job_of(worker, 1))


def test_manage_py_jobrunner_runs_jobrunner_commands() -> None:
    tasks.ship.enqueue(1)
    listed = manage(
        "jobrunner", "jobs", "list", "--worker", "tests.django_project.tasks_app.tasks.ship"
    )
    assert listed.returncode == 0, listed.stderr
    assert "tasks_app.tasks.ship" in listed.stdout
    status = manage("jobrunner", "status", "--settings", "tests.django_project.settings")
    assert status.returncode == 0, status.stderr
    bad = manage("jobrunner", "start", "--queues", "default:x")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error:") and "Traceback" not in bad.stderr


def test_start_refuses_a_database_that_migrate_has_not_set_up() -> None:
    import psycopg

    server = os.environ["JOBRUNNER_DJANGO_DSN"]
    empty = f"{connection.settings_dict['NAME']}_empty"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{empty}"')
        admin.execute(f'CREATE DATABASE "{empty}"')
    try:
        environ = {**env(), "JOBRUNNER_DJANGO_DSN": f"{server.rsplit('/', 1)[0]}/{empty}"}
        started = subprocess.run(
            [sys.executable, str(PROJECT / "manage.py"), "jobrunner", "start"],
            cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{empty}" WITH (FORCE)')
    assert started.returncode == 2
    assert started.stderr == (
        f"error: jobrunner's schema on database 'default' is at version 0; this jobrunner "
        f"needs {_migrate.LATEST}: run 'python manage.py migrate'\n"
    )


def test_start_without_a_reachable_database_is_one_error_line() -> None:
    environ = {**env(), "JOBRUNNER_DJANGO_DSN": "postgresql://postgres@127.0.0.1:1/nowhere"}
    started = subprocess.run(
        [sys.executable, str(PROJECT / "manage.py"), "jobrunner", "start"],
        cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert started.returncode == 1
    assert started.stderr.startswith("error: the database cannot be reached")
    assert len(started.stderr.splitlines()) == 1
