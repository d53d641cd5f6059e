"""The shop's workers, run by a daemon started with `--app tests.django_project.shop.workers`."""

from __future__ import annotations

import django

django.setup()

from jobrunner import Job, worker  # noqa: E402
from jobrunner.contrib.django import orm_safe  # noqa: E402

from .models import Order  # noqa: E402


@worker(queue="default", name="shop.ship_order")
@orm_safe
def ship_order(job: Job) -> None:
    """A sync worker: runs in the runner's threads, using the ORM as a request would."""
    Order.objects.filter(id=job.args["order_id"]).update(shipped=True)
