"""Django tasks on JobrunnerBackend, run by `manage.py jobrunner start` in the tests."""

from __future__ import annotations

import threading
from typing import Any

from django.db import connection

from jobrunner.contrib.django import job_options

try:
    from django.tasks import task
except ImportError:  # Django 5.2: the backport
    from django_tasks import task

from tests.django_project.shop.models import Order

MARKS: list[Any] = []
"""What the tasks saw, for the tests that call them in-process."""


@task
def ship(order_id: int, *, note: str = "") -> dict[str, Any]:
    """A sync task using the ORM; returns what it did."""
    Order.objects.filter(id=order_id).update(shipped=True, item=f"shipped {note}".strip())
    return {"order_id": order_id, "thread": threading.current_thread().name}


def retry_soon(job: Any) -> float:
    """The backoff of always_fails: retry at once (the tests wait for its last attempt)."""
    return 0.0


@job_options(max_attempts=2, tags=["flaky"], backoff=retry_soon)
@task(queue_name="emails", priority=50)
def always_fails(order_id: int) -> None:
    """Raises on every attempt: retried once, then FAILED."""
    raise LookupError(f"no mailbox for order {order_id}")


@task
async def add(a: int, b: int) -> int:
    """An async task."""
    return a + b


@task(takes_context=True)
def attempt_of(context: Any) -> int:
    """Returns the attempt the context reports."""
    return int(context.attempt)


@task
def open_connection() -> bool:
    """Uses the ORM, leaving Django's connection of its thread open."""
    Order.objects.count()
    return connection.connection is not None


@task
def returns_a_set() -> set[int]:
    """Returns what JSON cannot hold: the attempt fails."""
    return {1, 2}
