"""The shop's workers, run by a daemon started with `--app tests.django_project.shop.workers`."""

from __future__ import annotations

import django

django.setup()

from asgiref.sync import sync_to_async  # noqa: E402

from jobrunner import Job, worker  # noqa: E402
from jobrunner.contrib.django import orm_safe  # noqa: E402

from .models import Order  # noqa: E402


@orm_safe
def _ship(order_id: int) -> None:
    Order.objects.filter(id=order_id).update(shipped=True)


@worker(queue="default", name="shop.ship_order")
async def ship_order(job: Job) -> None:
    await sync_to_async(_ship)(job.args["order_id"])
