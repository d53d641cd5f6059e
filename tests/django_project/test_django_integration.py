"""jobrunner in a Django project, on the real database (pytest-django creates the test
database, and `migrate` installs jobrunner's schema with the project's own tables)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection, transaction

import jobrunner
from jobrunner.contrib.django import orm_safe
from jobrunner.contrib.django.migrations import __name__ as _migrations_package
from jobrunner.db import migrate as _migrate

from .shop.models import Order
from .shop.workers import ship_order

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def test_dsn() -> str:
    """The URL of the test database Django created."""
    url = urlsplit(os.environ["JOBRUNNER_DJANGO_DSN"])
    return urlunsplit(url._replace(path="/" + connection.settings_dict["NAME"]))


@pytest.fixture
def client(test_dsn: str) -> Iterator[jobrunner.SyncClient]:
    with jobrunner.connect_sync(test_dsn) as connected:
        yield connected


def _jobs() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM jobrunner_jobs")
        return int(cursor.fetchone()[0])


def test_migrate_installs_jobrunner_schema() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT max(version) FROM jobrunner_migrations")
        assert cursor.fetchone()[0] == _migrate.LATEST


def test_last_django_migration_reaches_the_latest_schema() -> None:
    import importlib
    import pkgutil

    package = importlib.import_module(_migrations_package)
    names = sorted(m.name for m in pkgutil.iter_modules(package.__path__))
    last = importlib.import_module(f"{_migrations_package}.{names[-1]}")
    assert last.Migration.schema_version == _migrate.LATEST


def test_rollback_leaves_no_job(client: jobrunner.SyncClient) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        order = Order.objects.create(item="book")
        client.insert(ship_order.new({"order_id": order.id}), conn=connection)
        raise RuntimeError("the view failed")
    assert Order.objects.count() == 0
    assert _jobs() == 0


def test_outside_atomic_is_refused(client: jobrunner.SyncClient) -> None:
    with pytest.raises(jobrunner.InvalidConnection, match=r"transaction\.atomic"):
        client.insert(ship_order.new({"order_id": 1}), conn=connection)
    assert _jobs() == 0


def test_commit_runs_the_job_in_a_daemon(
    client: jobrunner.SyncClient, test_dsn: str, tmp_path: Path
) -> None:
    with transaction.atomic():
        order = Order.objects.create(item="book")
        job = client.insert(ship_order.new({"order_id": order.id}), conn=connection)
        assert client.get_job(job.id) is None  # not visible before the commit
    assert client.get_job(job.id) is not None
    env = {
        **os.environ,
        "JOBRUNNER_DJANGO_DSN": test_dsn,
        "DJANGO_SETTINGS_MODULE": "tests.django_project.settings",
        "PYTHONPATH": str(ROOT),
        "JOBRUNNER_CONFIG": str(ROOT / "tests" / "apps" / "no_config.toml"),
    }
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "jobrunner", "start", "--dsn", test_dsn, "--queues",
             "default:2", "--app", "tests.django_project.shop.workers"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while client.get_job(job.id).state != "completed":  # type: ignore[union-attr]
            assert daemon.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the job did not complete"
            time.sleep(0.05)
    finally:
        daemon.terminate()
        daemon.wait(30)
    order.refresh_from_db()
    assert order.shipped


def test_orm_safe_closes_broken_connections_around_a_job() -> None:
    seen = []

    @orm_safe
    def work() -> None:
        seen.append(Order.objects.count())
        connection.close_if_unusable_or_obsolete = lambda: seen.append("checked")  # type: ignore[method-assign]

    work()
    del connection.close_if_unusable_or_obsolete
    assert seen == [0, "checked"]
