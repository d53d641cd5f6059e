"""A Django project on the test PostgreSQL with jobrunner's app (JOBRUNNER_DJANGO_DSN)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

_url = urlsplit(os.environ["JOBRUNNER_DJANGO_DSN"])

SECRET_KEY = "tests-only"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.messages",
    "django.contrib.sessions",
    "jobrunner.contrib.django",
    "tests.django_project.shop",
    "tests.django_project.records",
    "tests.django_project.tasks_app",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.django_project.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
# Django's Tasks framework on jobrunner (tests in tasks_app).
TASKS = {
    "default": {
        "BACKEND": "jobrunner.contrib.django.JobrunnerBackend",
        "QUEUES": ["default", "emails"],
        "OPTIONS": {"max_attempts": 3, "timeout": 30},
    }
}
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _url.path.lstrip("/"),
        "USER": _url.username or "postgres",
        "PASSWORD": _url.password or "",
        "HOST": _url.hostname or "127.0.0.1",
        "PORT": str(_url.port or 5432),
        "TEST": {"NAME": os.environ.get("JOBRUNNER_DJANGO_TEST_DB")},
    },
    # Not PostgreSQL: what jobrunner's system check refuses (never connected to).
    "lite": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
