"""The shop's tasks: Django's Tasks API, run by `python manage.py jobrunner start`."""

from __future__ import annotations

import logging

from jobrunner import Unique
from jobrunner.contrib.django import job_options

try:
    from django.tasks import task  # Django 6
except ImportError:  # Django 5.2: the django-tasks backport
    from django_tasks import task

from orders.models import Order

log = logging.getLogger(__name__)


@job_options(max_attempts=10, unique=Unique(period=300))  # retried, and never sent twice
@task(queue_name="emails", priority=10)
def send_confirmation(order_id: int) -> str:
    """Runs in the daemon's threads; its return value is the TaskResult's return_value."""
    order = Order.objects.get(id=order_id)
    log.info("confirming order %s to %s", order.id, order.email)
    Order.objects.filter(id=order.id).update(confirmed=True)
    return f"confirmation sent to {order.email}"


@task
def daily_report() -> dict[str, int]:
    """The periodic task: jobrunner's crontab enqueues it (jobrunner.toml)."""
    return {
        "orders": Order.objects.count(),
        "confirmed": Order.objects.filter(confirmed=True).count(),
    }
