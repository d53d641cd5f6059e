"""Triggers on a Django model, on the real test database, run by real daemons
(`jobrunner start --app tests.django_project.records.triggers`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection, transaction
from django.db.models import Q

import jobrunner
from jobrunner.triggers import TriggerError, trigger
from jobrunner.triggers.base import NO_MATCH

from .records.models import Ticket
from .records.triggers import confirm_ticket, notify_ticket, process_ticket
from .shop.models import Order

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.django_project.records.triggers"
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def test_dsn() -> str:
    url = urlsplit(os.environ["JOBRUNNER_DJANGO_DSN"])
    return urlunsplit(url._replace(path="/" + connection.settings_dict["NAME"]))


@pytest.fixture
def client(test_dsn: str) -> Iterator[jobrunner.SyncClient]:
    with jobrunner.connect_sync(test_dsn) as connected:
        yield connected


def _env(test_dsn: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "JOBRUNNER_DJANGO_DSN": test_dsn,
        "DJANGO_SETTINGS_MODULE": "tests.django_project.settings",
        "PYTHONPATH": str(ROOT),
        "JOBRUNNER_CONFIG": str(ROOT / "tests" / "apps" / "no_config.toml"),
        "JOBRUNNER_CRON_INTERVAL_S": "0.2",
        "JOBRUNNER_LEADER_LEASE_S": "2",
        **extra,
    }


@pytest.fixture
def daemons(test_dsn: str, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `jobrunner start` daemons on the test database; stopped after the test."""
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(**env: str) -> subprocess.Popen[bytes]:
        log = tmp_path / f"daemon-{len(started)}.log"
        with log.open("wb") as out:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "jobrunner", "start", "--dsn", test_dsn, "--queues",
                 "tickets:10", "--app", APP],
                cwd=ROOT, env=_env(test_dsn, **env), stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        started.append((daemon, log))
        return daemon

    yield start
    for daemon, log in started:
        daemon.terminate()
        assert daemon.wait(30) == 0, log.read_text()


def _until(check: Callable[[], Any], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_bad_definition_is_one_clear_error() -> None:
    async def action(record: Any, job: Any) -> None: ...

    with pytest.raises(TriggerError, match=r"where is not a Q of records.Ticket: .*'colour'"):
        trigger(Ticket, where=Q(colour="red"), name="records.bad")(action)
    with pytest.raises(TriggerError, match=r"where must be a django.db.models.Q"):
        trigger(Ticket, where=Order.objects.all(), name="records.bad")(action)
    with pytest.raises(TriggerError, match=r"two triggers are called 'records.process'"):
        trigger(Ticket, where=Q(status="x"), name="records.process")(action)
    with pytest.raises(TriggerError, match=r"is on records.Ticket, got a Order"):
        process_ticket.new_for(Order(id=1))


def test_rollback_leaves_no_job_and_commit_runs_it_skipping_a_record_out_of_where(
    client: jobrunner.SyncClient, daemons: Callable[..., Any]
) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        ticket = Ticket.objects.create(status="paid")
        client.insert(notify_ticket.new_for(ticket), conn=connection)
        raise RuntimeError("the view failed")
    assert client.list_jobs(worker="records.notify") == []

    with transaction.atomic():
        paid = Ticket.objects.create(status="paid")
        job = client.insert(notify_ticket.new_for(paid), conn=connection)
        moved = Ticket.objects.create(status="paid")
        skipped = client.insert(notify_ticket.new_for(moved), conn=connection)
    Ticket.objects.filter(id=moved.id).update(status="refunded")  # before its job runs
    daemons()

    def finished() -> bool:
        return all(client.get_job(j.id).state == "completed" for j in (job, skipped))  # type: ignore[union-attr]

    _until(finished, 30, "the jobs did not complete")
    paid.refresh_from_db()
    moved.refresh_from_db()
    assert (paid.status, paid.runs) == ("notified", 1)
    assert (moved.status, moved.runs) == ("refunded", 0)
    assert client.get_job(skipped.id).meta == {"skipped": NO_MATCH}  # type: ignore[union-attr]


def test_two_daemons_run_a_per_second_trigger_once_per_record(
    client: jobrunner.SyncClient, daemons: Callable[..., Any]
) -> None:
    daemons(TRIGGER_ACTION_DELAY_S="0.02")
    daemons(TRIGGER_ACTION_DELAY_S="0.02")
    Ticket.objects.bulk_create(Ticket(status="pending") for _ in range(200))

    _until(lambda: Ticket.objects.filter(status="done").count() == 200, 90, "not all processed")
    scans = client.list_jobs(worker="records.process:scan", limit=1000)
    _until(
        lambda: len(client.list_jobs(worker="records.process:scan", state="completed",
                                     limit=1000)) >= len(scans) + 2,
        20, "no scan ran after the last record was done",
    )  # fmt: skip
    assert list(Ticket.objects.values_list("runs", flat=True).distinct()) == [1]
    jobs = client.list_jobs(worker="records.process", limit=1000)
    ran = [j for j in jobs if "skipped" not in j.meta]
    assert len(ran) == 200 and all(j.state == "completed" for j in jobs)


def test_a_row_inserted_with_plain_sql_is_processed_through_the_printed_trigger(
    client: jobrunner.SyncClient, daemons: Callable[..., Any], test_dsn: str
) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "jobrunner", "triggers", "sql", "records.notify", "--app", APP],
        cwd=ROOT, env=_env(test_dsn), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    assert "IF NEW.\"status\" = 'paid' THEN" in printed.stdout
    with connection.cursor() as cursor:
        cursor.execute(printed.stdout)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO records_ticket (status, runs) VALUES ('paid', 0) RETURNING id"
            )
            ticket_id = cursor.fetchone()[0]
        daemons()
        _until(lambda: Ticket.objects.get(id=ticket_id).status == "notified", 30, "not processed")
        assert Ticket.objects.get(id=ticket_id).runs == 1
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "DROP TRIGGER jobrunner_enqueue_records_notify ON records_ticket; "
                "DROP FUNCTION jobrunner_enqueue_records_notify()"
            )


def test_on_write_enqueues_in_the_saving_transaction_and_the_daemon_runs_it(
    client: jobrunner.SyncClient, daemons: Callable[..., Any]
) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        Ticket.objects.create(status="placed")
        raise RuntimeError("the view failed")
    with transaction.atomic():
        placed = Ticket.objects.create(status="placed")
        other = Ticket.objects.create(status="open")
        placed.save()  # saved twice: one incomplete job
    jobs = client.list_jobs(worker=confirm_ticket.name)
    assert [job.args for job in jobs] == [{"pk": placed.id}]
    daemons()
    _until(lambda: client.get_job(jobs[0].id).state == "completed", 30, "not run")  # type: ignore[union-attr]
    placed.refresh_from_db()
    other.refresh_from_db()
    assert (placed.status, placed.runs, other.status) == ("confirmed", 1, "open")


def test_triggers_list_and_run_on_django_models(test_dsn: str) -> None:
    Ticket.objects.bulk_create(Ticket(status=s) for s in ("pending", "pending", "done"))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "jobrunner", "triggers", *args, "--app", APP,
             "--dsn", test_dsn, "--json"],
            cwd=ROOT, env=_env(test_dsn), capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    ran = cli("run", "records.process")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == {"trigger": "records.process", "matched": 2, "inserted": 2}
    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    by_name = {t["name"]: t for t in json.loads(listed.stdout)}
    assert by_name["records.process"]["model"] == "records.Ticket"
    assert (by_name["records.process"]["matched"], by_name["records.process"]["incomplete"]) == (
        2,
        2,
    )
