"""Applies jobrunner's SQL migrations (the ones `jobrunner migrate` applies) in Django's."""

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
    """jobrunner's tables up to `schema_version`. A jobrunner release with new SQL migrations
    adds a Django migration that runs `apply_schema` again (a test holds the last one's
    `schema_version` to the latest); 'jobrunner migrate' records the same versions."""

    schema_version = 3
    initial = True
    dependencies: ClassVar[list[tuple[str, str]]] = []
    operations: ClassVar[list[Any]] = [
        migrations.RunPython(apply_schema, migrations.RunPython.noop, elidable=False)
    ]
