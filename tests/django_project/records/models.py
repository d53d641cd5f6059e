from __future__ import annotations

from django.db import models


class Ticket(models.Model):
    """A record that triggers act on: `runs` counts the actions that committed on it."""

    status = models.CharField(max_length=20, default="pending")
    runs = models.IntegerField(default=0)
    run_by = models.IntegerField(null=True)
