"""The admin's view of jobrunner's jobs table: a model Django does not manage (no SQL runs;
jobrunner's own migrations own the table)."""

from __future__ import annotations

from typing import Any, ClassVar

import django.contrib.postgres.fields
from django.db import migrations, models

STATES = [
    ("available", "available"),
    ("scheduled", "scheduled"),
    ("executing", "executing"),
    ("retryable", "retryable"),
    ("completed", "completed"),
    ("discarded", "discarded"),
    ("cancelled", "cancelled"),
]


def _text_array(**options: Any) -> Any:
    return django.contrib.postgres.fields.ArrayField(
        base_field=models.TextField(), size=None, **options
    )


class Migration(migrations.Migration):  # type: ignore[misc]
    """jobrunner's tables up to `schema_version` (see 0001_jobrunner_schema), as before."""

    schema_version = 9
    dependencies: ClassVar[list[tuple[str, str]]] = [("jobrunner", "0007_jobrunner_batch_index")]
    operations: ClassVar[list[Any]] = [
        migrations.CreateModel(
            name="Job",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("state", models.TextField(choices=STATES)),
                ("queue", models.TextField()),
                ("worker", models.TextField()),
                ("args", models.JSONField()),
                ("meta", models.JSONField()),
                ("tags", _text_array()),
                ("errors", models.JSONField()),
                ("attempt", models.SmallIntegerField()),
                ("max_attempts", models.SmallIntegerField()),
                ("priority", models.SmallIntegerField()),
                ("inserted_at", models.DateTimeField()),
                ("scheduled_at", models.DateTimeField()),
                ("attempted_at", models.DateTimeField(null=True)),
                ("completed_at", models.DateTimeField(null=True)),
                ("discarded_at", models.DateTimeField(null=True)),
                ("cancelled_at", models.DateTimeField(null=True)),
                ("attempted_by", _text_array(null=True)),
                ("result", models.JSONField(null=True)),
            ],
            options={
                "db_table": "jobrunner_jobs",
                "ordering": ["-id"],
                "managed": False,
                "default_permissions": ("view", "change"),
            },
        ),
    ]
