"""Django's Tasks framework on jobrunner: enqueue in the caller's transaction, results read
from the jobs, tasks run by `manage.py jobrunner start` (a subprocess, as a user runs it)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, transaction

from jobrunner.contrib.django import JobrunnerBackend, execution, to_jobrunner_priority
from jobrunner.contrib.django import tasks_api as api
from jobrunner.contrib.django.database import schema_errors
from jobrunner.core.errors import InvalidConnection
from jobrunner.db import migrate as _migrate

from ..shop.models import Order
from . import tasks

ROOT = Path(__file__).resolve().parents[3]
PROJECT = ROOT / "tests" / "django_project"
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_jobs() -> Iterator[None]:
    """jobrunner's table is not Django's to flush between tests: each starts and ends empty."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM jobrunner_jobs")
    yield
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM jobrunner_jobs")


def _jobs(where: str = "TRUE") -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, state::text, queue, worker, priority, max_attempts, tags, args "
            f"FROM jobrunner_jobs WHERE {where} ORDER BY id"
        )
        return [(*row[:-1], json.loads(row[-1])) for row in cursor.fetchall()]


def manage(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PROJECT / "manage.py"), *args],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _env() -> dict[str, str]:
    dsn = os.environ["JOBRUNNER_DJANGO_DSN"].rsplit("/", 1)[0]
    return {
        **os.environ,
        "JOBRUNNER_DJANGO_DSN": f"{dsn}/{connection.settings_dict['NAME']}",
        "PYTHONPATH": str(ROOT),
        "JOBRUNNER_CONFIG": str(ROOT / "tests" / "apps" / "no_config.toml"),
    }


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`manage.py jobrunner start` on the test database, stopped with SIGTERM."""
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(PROJECT / "manage.py"), "jobrunner", "start",
             "--queues", "default:4,emails:2", "--log-level", "info"],
            cwd=ROOT, env=_env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    process.log = log  # type: ignore[attr-defined]
    yield process
    process.terminate()
    assert process.wait(30) == 0, log.read_text()


def wait_for(
    result: Any, done: Callable[[Any], bool], process: subprocess.Popen[bytes], seconds: float = 30
) -> None:
    deadline = time.monotonic() + seconds
    while True:
        result.refresh()
        if done(result):
            return
        assert process.poll() is None, process.log.read_text()  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, f"{result.status}: {process.log.read_text()}"  # type: ignore[attr-defined]
        time.sleep(0.05)


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
    assert _jobs() == []


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
    rows = {row[0]: row for row in _jobs()}
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
    assert len(_jobs()) == 2


def test_aenqueue_and_aget_result() -> None:
    async def go() -> tuple[Any, Any]:
        result = await tasks.add.aenqueue(2, 3)
        read = await tasks.add.aget_result(result.id)
        await sync_to_async(lambda: connection.close())()  # the connection of their thread
        return result, read

    enqueued, read = asyncio.run(go())
    assert read.id == enqueued.id and read.args == [2, 3]
    assert read.status == api.TaskResultStatus.READY


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
        assert failing.max_attempts == 2 and failing.backoff(_job(failing, 1)) == 0.0
        assert (ship.max_attempts, ship.timeout, failing.timeout) == (3, 30, 30)
        order = Order.objects.create(item="book")
        recorded = ship._perform(_job(ship, 1, args=[order.id]))
        assert recorded.value["order_id"] == order.id  # a Record: the job's result
        with pytest.raises(LookupError):
            failing._perform(_job(failing, 1, args=[order.id]))
        with pytest.raises(LookupError):
            failing._perform(_job(failing, 2, args=[order.id]))
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


def _job(worker: Any, attempt: int, args: list[Any] | None = None) -> Any:
    from jobrunner.core.job import Job, JobState

    return Job(
        id=1, state=JobState.EXECUTING, queue=worker.queue, worker=worker.name,
        args={"args": args or [], "kwargs": {}}, attempt=attempt,
        max_attempts=worker.max_attempts, attempted_by=("node-1", "claim"),
        meta={"django_backend": "default"},
    )  # fmt: skip


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
    assert len(_jobs()) == 2


def test_a_return_value_that_is_not_json_fails_the_attempt() -> None:
    worker = execution.resolve("tests.django_project.tasks_app.tasks.returns_a_set")
    assert worker is not None
    with pytest.raises(ValueError, match="JSON"):
        worker._perform(_job(worker, 1))


def test_start_refuses_a_database_that_migrate_has_not_set_up() -> None:
    import psycopg

    server = os.environ["JOBRUNNER_DJANGO_DSN"]
    empty = f"{connection.settings_dict['NAME']}_empty"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{empty}"')
        admin.execute(f'CREATE DATABASE "{empty}"')
    try:
        env = {**_env(), "JOBRUNNER_DJANGO_DSN": f"{server.rsplit('/', 1)[0]}/{empty}"}
        started = subprocess.run(
            [sys.executable, str(PROJECT / "manage.py"), "jobrunner", "start"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
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
    env = {**_env(), "JOBRUNNER_DJANGO_DSN": "postgresql://postgres@127.0.0.1:1/nowhere"}
    started = subprocess.run(
        [sys.executable, str(PROJECT / "manage.py"), "jobrunner", "start"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert started.returncode == 1
    assert started.stderr.startswith("error: the database cannot be reached")
    assert len(started.stderr.splitlines()) == 1
