"""A Django project on the test PostgreSQL with jobrunner's app (JOBRUNNER_DJANGO_DSN)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

_url = urlsplit(os.environ["JOBRUNNER_DJANGO_DSN"])

SECRET_KEY = "tests-only"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "jobrunner.contrib.django",
    "tests.django_project.shop",
    "tests.django_project.records",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _url.path.lstrip("/"),
        "USER": _url.username or "postgres",
        "PASSWORD": _url.password or "",
        "HOST": _url.hostname or "127.0.0.1",
        "PORT": str(_url.port or 5432),
        "TEST": {"NAME": os.environ.get("JOBRUNNER_DJANGO_TEST_DB")},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
