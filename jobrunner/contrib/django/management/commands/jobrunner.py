"""`python manage.py jobrunner ...`: every `jobrunner` command, with Django set up.

The database is the jobrunner backend's (its OPTIONS "database", else "default") unless
--dsn or JOBRUNNER_DATABASE_URL says otherwise; `start` also runs the Django tasks enqueued
through JobrunnerBackend, after checking that `migrate` installed jobrunner's schema.
"""

from __future__ import annotations

import os
import sys
from typing import Any, ClassVar

from django.core.management.base import BaseCommand, CommandParser
from django.db import connections

from jobrunner.contrib.django import database as _database
from jobrunner.contrib.django import execution as _execution


class Command(BaseCommand):  # type: ignore[misc]
    help = (
        "jobrunner's commands with Django set up, e.g. "
        "'python manage.py jobrunner start --queues default:10' (see 'jobrunner --help')."
    )
    requires_system_checks: ClassVar[list[str]] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("arguments", nargs="*", help="a jobrunner command and its options")

    def run_from_argv(self, argv: list[str]) -> None:
        """Hand everything after `jobrunner` to jobrunner's own command line as it is, less
        the options Django itself has taken (--settings, --pythonpath)."""
        run(_without_django_options(argv[2:]))

    def handle(self, *args: Any, **options: Any) -> None:
        run([*options["arguments"]])


def run(arguments: list[str]) -> None:
    """Run jobrunner's command line on `arguments` against Django's database."""
    from jobrunner.cli.app import main

    alias = backend_database()
    given = any(a == "--dsn" or a.startswith("--dsn=") for a in arguments)
    if not given and not os.environ.get("JOBRUNNER_DATABASE_URL"):
        os.environ["JOBRUNNER_DATABASE_URL"] = _database.dsn(alias)
    if arguments[:1] == ["start"]:
        errors = _database.schema_errors(alias)
        if errors:
            sys.stderr.write(f"error: {errors[0].msg}: run 'python manage.py migrate'\n")
            sys.exit(2)
        _execution.install()
    connections.close_all()  # the daemon's threads open their own
    main(arguments, prog_name="manage.py jobrunner")


def _without_django_options(arguments: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for argument in arguments:
        if skip:
            skip = False
        elif argument in ("--settings", "--pythonpath"):
            skip = True
        elif not argument.startswith(("--settings=", "--pythonpath=")):
            kept.append(argument)
    return kept


def backend_database() -> str:
    """The database of the first jobrunner backend in settings.TASKS ("default" if none)."""
    from django.conf import settings

    from jobrunner.contrib.django.backend import JobrunnerBackend

    for alias in getattr(settings, "TASKS", {}):
        from jobrunner.contrib.django import tasks_api as api

        backend = api.task_backends[alias]
        if isinstance(backend, JobrunnerBackend):
            return backend.database
    return "default"
