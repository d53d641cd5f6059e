"""Django's Tasks framework: `django.tasks` on Django 6, the `django-tasks` backport on 5.2.

The rest of the integration takes the framework's names from here only.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from jobrunner.core.extras import require

if importlib.util.find_spec("django.tasks") is not None:
    FRAMEWORK = "django.tasks"
    _INVALID_TASK = "InvalidTask"
else:  # Django 5.2: the backport, in the `django` extra for Python < 3.12
    require("django_tasks", "django")
    FRAMEWORK = "django_tasks"
    _INVALID_TASK = "InvalidTaskError"

_api = importlib.import_module(FRAMEWORK)
_base = importlib.import_module(f"{FRAMEWORK}.base")
_backends = importlib.import_module(f"{FRAMEWORK}.backends.base")
_exceptions = importlib.import_module(f"{FRAMEWORK}.exceptions")
_signals = importlib.import_module(f"{FRAMEWORK}.signals")

BaseTaskBackend: Any = _backends.BaseTaskBackend
Task: Any = _base.Task
TaskContext: Any = _base.TaskContext
TaskError: Any = _base.TaskError
TaskResult: Any = _base.TaskResult
TaskResultStatus: Any = _base.TaskResultStatus
task_backends: Any = _api.task_backends
InvalidTask: type[Exception] = getattr(_exceptions, _INVALID_TASK)
TaskResultDoesNotExist: type[Exception] = _exceptions.TaskResultDoesNotExist
TaskResultMismatch: type[Exception] = _exceptions.TaskResultMismatch
task_enqueued: Any = _signals.task_enqueued
task_started: Any = _signals.task_started
task_finished: Any = _signals.task_finished
