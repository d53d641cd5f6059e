"""The Django app: its migrations install jobrunner's schema, its admin shows the jobs, its
checks report a schema that `migrate` has not brought up to date."""

from __future__ import annotations

import importlib
from typing import Any

from django.apps import AppConfig
from django.core import checks

from jobrunner.core.errors import MissingExtra


class JobrunnerConfig(AppConfig):  # type: ignore[misc]
    name = "jobrunner.contrib.django"
    label = "jobrunner"
    verbose_name = "jobrunner"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        checks.register(check_schema, checks.Tags.database)
        try:
            from jobrunner.contrib.django import tasks_api
        except MissingExtra:  # no Tasks framework here: enqueue with conn= still works
            return
        # The framework's checks (each backend's) and logging receivers, even when the
        # backport's own app is not in INSTALLED_APPS.
        importlib.import_module(f"{tasks_api.FRAMEWORK}.checks")
        importlib.import_module(f"{tasks_api.FRAMEWORK}.signals")


def check_schema(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[Any]:
    """Pending jobrunner migrations on the databases the check runs on (`check --database`,
    `migrate`, `manage.py jobrunner start`)."""
    from jobrunner.contrib.django.database import schema_errors

    errors: list[Any] = []
    for alias in databases or ():
        errors.extend(schema_errors(alias))
    return errors
