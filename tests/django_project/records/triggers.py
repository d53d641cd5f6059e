"""Triggers on the Ticket model, run by daemons started with
`--app tests.django_project.records.triggers`."""

from __future__ import annotations

import os
import time

import django

django.setup()

from django.db.models import Q  # noqa: E402

from jobrunner import Job  # noqa: E402
from jobrunner.triggers import trigger  # noqa: E402

from .models import Ticket  # noqa: E402


@trigger(
    Ticket,
    where=Q(status="pending"),
    cron="* * * * * *",  # every second
    queue="tickets",
    max_attempts=3,
    name="records.process",
)
def process_ticket(ticket: Ticket, job: Job) -> None:
    """pending -> done in the job's transaction; a second run would show as runs == 2."""
    time.sleep(float(os.environ.get("TRIGGER_ACTION_DELAY_S", "0")))
    ticket.status = "done"
    ticket.runs += 1
    ticket.run_by = os.getpid()
    ticket.save()


@trigger(Ticket, where=Q(status="paid"), queue="tickets", name="records.notify")
async def notify_ticket(ticket: Ticket, job: Job) -> None:
    """On demand, an async def: its ORM calls run in the transaction that holds the row."""
    ticket.status = "notified"
    ticket.runs += 1
    await ticket.asave()


@trigger(Ticket, where=Q(status="placed"), on_write=True, queue="tickets", name="records.confirm")
def confirm_ticket(ticket: Ticket, job: Job) -> None:
    """Enqueued by Django's post_save whenever a ticket is saved as placed."""
    ticket.status = "confirmed"
    ticket.runs += 1
    ticket.save()
