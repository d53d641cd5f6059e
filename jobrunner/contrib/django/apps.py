"""The Django app: its migration installs jobrunner's schema."""

from __future__ import annotations

from django.apps import AppConfig


class JobrunnerConfig(AppConfig):
    name = "jobrunner.contrib.django"
    label = "jobrunner"
    verbose_name = "jobrunner"
