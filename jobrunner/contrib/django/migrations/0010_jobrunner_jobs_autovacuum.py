"""Applies jobrunner's SQL migrations up to 0011 (autovacuum that keeps the jobs table flat)."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import migrations


def apply_schema(apps: Any, schema_editor: Any) -> None:
    from jobrunner.contrib.django import driver_connection
    from jobrunner.db import psycopg as _psycopg

    connection = schema_editor.connection
    connection.ensure_connection()
    _psycopg.migrate(driver_connection(connection), in_transaction=True)


class Migration(migrations.Migration):  # type: ignore[misc]
    """jobrunner's tables up to `schema_version` (see 0001_jobrunner_schema)."""

    schema_version = 11
    dependencies: ClassVar[list[tuple[str, str]]] = [
        ("jobrunner", "0009_jobrunner_queue_rate_limit"),
    ]
    operations: ClassVar[list[Any]] = [
        migrations.RunPython(apply_schema, migrations.RunPython.noop, elidable=False)
    ]
