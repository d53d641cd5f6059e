"""`python manage.py jobrunner ...`: every `jobrunner` command, with Django set up.

The database is the jobrunner backend's (its OPTIONS "database", else "default") unless
--dsn or JOBRUNNER_DATABASE_URL says otherwise; `start` also runs the Django tasks enqueued
through JobrunnerBackend, after checking that `migrate` installed jobrunner's schema.
"""

from __future__ import annotations

import os
import sys
from typing import Any, ClassVar, NoReturn

from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError, connections

from jobrunner.contrib.django import database as _database
from jobrunner.contrib.django import execution as _execution
from jobrunner.core.errors import InvalidConnection
from jobrunner.db.connection import redact


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

    try:
        _prepare(arguments)
    except InvalidConnection as exc:
        _fail(str(exc), 2)
    except DatabaseError as exc:
        _fail(f"the database cannot be reached: {' '.join(str(exc).split())}", 1)
    connections.close_all()  # the daemon's threads open their own
    main(arguments, prog_name="manage.py jobrunner")


def _prepare(arguments: list[str]) -> None:
    """Point jobrunner at Django's database; before `start`, check that `migrate` ran."""
    alias = backend_database()
    given = any(a == "--dsn" or a.startswith("--dsn=") for a in arguments)
    if given or os.environ.get("JOBRUNNER_DATABASE_URL"):
        return _install(arguments)
    os.environ["JOBRUNNER_DATABASE_URL"] = _database.dsn(alias)
    if arguments[:1] == ["start"]:
        errors = _database.schema_errors(alias)
        if errors:
            _fail(f"{errors[0].msg}: run 'python manage.py migrate'", 2)
    return _install(arguments)


def _install(arguments: list[str]) -> None:
    if arguments[:1] == ["start"]:
        _execution.install()


def _fail(message: str, code: int) -> NoReturn:
    sys.stderr.write(f"error: {redact(message)}\n")
    sys.exit(code)


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

    from jobrunner.contrib.django import tasks_api as api
    from jobrunner.contrib.django.backend import JobrunnerBackend

    for alias in getattr(settings, "TASKS", {}):
        backend = api.task_backends[alias]
        if isinstance(backend, JobrunnerBackend):
            return backend.database
    return "default"
