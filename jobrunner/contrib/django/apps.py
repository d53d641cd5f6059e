"""The Django app: its migration installs jobrunner's schema."""

from __future__ import annotations

from django.apps import AppConfig


class JobrunnerConfig(AppConfig):  # type: ignore[misc]
    name = "jobrunner.contrib.django"
    label = "jobrunner"
    verbose_name = "jobrunner"
