"""The admin's jobs: a read-only list and page, and retry and cancel through jobrunner."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from jobrunner.contrib.django.models import Job

from . import tasks

pytestmark = pytest.mark.django_db(transaction=True)
LIST = "/admin/jobrunner/job/"


@pytest.fixture
def admin_client() -> Client:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM jobrunner_jobs")
    client = Client()
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
    return client


def _rows(client: Client, **query: str) -> str:
    """The results table of the jobs list."""
    page = client.get(LIST, query).content.decode()
    if 'id="result_list"' not in page:
        return ""
    return page.split('id="result_list"')[1].split("</table>")[0]


def _failed_job() -> Any:
    """A discarded job with one error, as the daemon leaves it."""
    result = tasks.always_fails.enqueue(41)
    error = {"attempt": 1, "at": "2026-01-01T00:00:00+00:00", "error": "LookupError: <b>no</b>",
             "traceback": "Traceback...\nLookupError: <b>no</b>"}  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE jobrunner_jobs SET state = 'discarded', attempt = 1, discarded_at = now(), "
            "errors = %s::jsonb WHERE id = %s",
            [json.dumps([error]), int(result.id)],
        )
    return result


def test_the_list_filters_and_searches(admin_client: Client) -> None:
    failed = _failed_job()
    tasks.ship.enqueue(12345)
    page = admin_client.get(LIST)
    assert page.status_code == 200
    everything = _rows(admin_client)
    assert "always_fails" in everything and "tasks.ship" in everything
    discarded = _rows(admin_client, state="discarded")
    assert "always_fails" in discarded and "tasks.ship" not in discarded
    found = _rows(admin_client, q="12345")
    assert "tasks.ship" in found and "always_fails" not in found
    by_queue = _rows(admin_client, queue="emails")
    assert "always_fails" in by_queue and "tasks.ship" not in by_queue
    by_worker = _rows(admin_client, worker="tests.django_project.tasks_app.tasks.ship")
    assert "tasks.ship" in by_worker and f">{failed.id}<" not in by_worker


def test_the_job_page_shows_its_errors_read_only(admin_client: Client) -> None:
    failed = _failed_job()
    page = admin_client.get(f"{LIST}{failed.id}/change/").content.decode()
    assert "attempt 1 at 2026-01-01" in page
    assert "LookupError: &lt;b&gt;no&lt;/b&gt;" in page  # escaped
    assert 'name="_save"' not in page
    assert admin_client.get("/admin/jobrunner/job/add/").status_code == 403
    with pytest.raises(TypeError, match="through the client"):
        Job.objects.get(id=int(failed.id)).save()


def test_retry_and_cancel_actions_go_through_jobrunner(admin_client: Client) -> None:
    failed = _failed_job()
    waiting = tasks.ship.enqueue(1)
    response = admin_client.post(
        LIST, {"action": "retry_jobs", "_selected_action": [failed.id]}, follow=True
    )
    assert "1 job(s) retried" in response.content.decode()
    assert tasks.always_fails.get_result(failed.id).status == "READY"
    response = admin_client.post(
        LIST, {"action": "cancel_jobs", "_selected_action": [waiting.id, failed.id]}, follow=True
    )
    assert "2 job(s) cancelled" in response.content.decode()
    response = admin_client.post(
        LIST, {"action": "cancel_jobs", "_selected_action": [waiting.id]}, follow=True
    )
    assert "0 job(s) cancelled; 1 could not be" in response.content.decode()
    states = dict(Job.objects.values_list("id", "state"))
    assert states == {int(failed.id): "cancelled", int(waiting.id): "cancelled"}
