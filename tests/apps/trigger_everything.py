"""An on-demand trigger without a where (every record), for the CLI's refusal to scan it."""

from __future__ import annotations

from jobrunner import Job
from jobrunner.triggers import trigger
from tests.apps.trigger_models import TriggerOrder


@trigger(TriggerOrder, name="tests.orders.everything")
def touch(order: TriggerOrder, job: Job) -> None:
    order.runs += 1
