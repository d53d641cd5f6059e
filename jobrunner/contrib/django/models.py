"""jobrunner's jobs table as a read-only Django model, for the admin (no table of its own:
jobrunner's migrations own `jobrunner_jobs`)."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.postgres.fields import ArrayField
from django.db import models

STATES = [
    (state, state)
    for state in (
        "available",
        "scheduled",
        "executing",
        "retryable",
        "completed",
        "discarded",
        "cancelled",
    )
]


class Job(models.Model):  # type: ignore[misc]
    """A row of `jobrunner_jobs`; change jobs through the client, never by saving this."""

    id = models.BigAutoField(primary_key=True)
    state = models.TextField(choices=STATES)
    queue = models.TextField()
    worker = models.TextField()
    args = models.JSONField()
    meta = models.JSONField()
    tags = ArrayField(models.TextField())
    errors = models.JSONField()
    attempt = models.SmallIntegerField()
    max_attempts = models.SmallIntegerField()
    priority = models.SmallIntegerField()
    inserted_at = models.DateTimeField()
    scheduled_at = models.DateTimeField()
    attempted_at = models.DateTimeField(null=True)
    completed_at = models.DateTimeField(null=True)
    discarded_at = models.DateTimeField(null=True)
    cancelled_at = models.DateTimeField(null=True)
    attempted_by = ArrayField(models.TextField(), null=True)
    result = models.JSONField(null=True)  # what the worker recorded (Record)

    class Meta:
        managed = False
        db_table = "jobrunner_jobs"
        ordering: ClassVar[list[str]] = ["-id"]
        default_permissions: ClassVar[tuple[str, ...]] = ("view", "change")

    def __str__(self) -> str:
        return f"{self.worker} #{self.id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("jobrunner's jobs are changed through the client, not saved")

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("jobrunner's jobs are changed through the client, not deleted")
