"""The example shop's settings: PostgreSQL from DATABASE_URL, Django's Tasks on jobrunner."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

_db = urlsplit(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/django_shop"))

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only")
DEBUG = True
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "shopsite.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.messages",
    "django.contrib.sessions",
    "jobrunner.contrib.django",  # jobrunner's schema (migrate), admin and manage.py jobrunner
    "orders",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
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
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(_db.path.lstrip("/")),
        "USER": unquote(_db.username or ""),
        "PASSWORD": unquote(_db.password or ""),
        "HOST": _db.hostname or "",
        "PORT": str(_db.port or ""),
    }
}
TASKS = {
    "default": {
        "BACKEND": "jobrunner.contrib.django.JobrunnerBackend",
        "QUEUES": ["default", "emails"],
        # jobrunner's options for every task; a task may override them (orders/tasks.py).
        "OPTIONS": {"max_attempts": 5, "timeout": 60},
    }
}
