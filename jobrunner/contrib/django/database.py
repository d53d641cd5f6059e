"""The backend's database: Django's connection as jobrunner's, its URL for the daemon, and
the system checks on it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

from django.core import checks
from django.db import connections

from jobrunner.contrib.django import driver_connection
from jobrunner.core.errors import InvalidConnection
from jobrunner.db import migrate as _migrate
from jobrunner.db import psycopg as _psycopg

# Connection OPTIONS that a PostgreSQL URL carries (libpq's names, as Django passes them).
_URL_OPTIONS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "application_name", "options")


@contextlib.contextmanager
def target(alias: str, *, unique: bool = False) -> Iterator[tuple[Any, Any]]:
    """(connection, side) to run jobrunner's statements on Django's connection `alias`.

    Inside `transaction.atomic()` they join the caller's transaction; outside it, Django's
    connection autocommits each. `side`, only for a unique insert inside a transaction, is a
    connection of its own that commits at once (jobrunner releases unique keys on it)."""
    conn = connections[alias]
    raw = driver_connection(conn, atomic=False)
    if not (unique and conn.in_atomic_block):
        yield _psycopg.SyncConn(raw), None
        return
    import psycopg

    with psycopg.connect(dsn(alias), autocommit=True) as side:
        yield _psycopg.SyncConn(raw), _psycopg.SyncConn(side)


def dsn(alias: str = "default") -> str:
    """The PostgreSQL URL of Django's database `alias` (its DATABASES entry)."""
    conn = connections[alias]
    if conn.vendor != "postgresql":
        raise InvalidConnection(
            f"jobrunner needs a PostgreSQL database; DATABASES[{alias!r}] is {conn.vendor!r}"
        )
    entry = conn.settings_dict
    user = quote(entry.get("USER") or "", safe="")
    password = quote(entry.get("PASSWORD") or "", safe="")
    host = entry.get("HOST") or ""
    query = {k: str(v) for k, v in (entry.get("OPTIONS") or {}).items() if k in _URL_OPTIONS}
    if host.startswith("/"):  # a unix socket's directory
        query["host"], host = host, ""
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    port = f":{entry['PORT']}" if entry.get("PORT") else ""
    name = quote(entry.get("NAME") or "", safe="")
    tail = f"?{urlencode(query)}" if query else ""
    return f"postgresql://{auth}{host}{port}/{name}{tail}"


def check_vendor(backend: str, alias: str) -> Iterator[Any]:
    """A backend whose database is not PostgreSQL cannot hold jobs."""
    if alias not in connections:
        yield checks.Error(
            f"TASKS[{backend!r}] uses database {alias!r}, which is not in DATABASES",
            id="jobrunner.E001",
        )
    elif connections[alias].vendor != "postgresql":
        yield checks.Error(
            f"TASKS[{backend!r}] runs on jobrunner, which needs PostgreSQL; "
            f"database {alias!r} is {connections[alias].vendor!r}",
            hint="Point OPTIONS['database'] at a PostgreSQL database in DATABASES.",
            id="jobrunner.E002",
        )


def schema_errors(alias: str) -> list[Any]:
    """jobrunner's schema on database `alias` is behind this jobrunner (pending migrations)."""
    conn = connections[alias]
    if conn.vendor != "postgresql":
        return []
    with conn.cursor() as cursor:
        cursor.execute("SELECT to_regclass('jobrunner_migrations') IS NOT NULL")
        present = cursor.fetchone()[0]
        version = 0
        if present:
            cursor.execute(_migrate.SCHEMA_VERSION)
            version = int(cursor.fetchone()[0])
    if version >= _migrate.LATEST:
        return []
    return [
        checks.Warning(  # a warning: an error would stop the `migrate` that fixes it
            f"jobrunner's schema on database {alias!r} is at version {version}; "
            f"this jobrunner needs {_migrate.LATEST}",
            hint="Run 'python manage.py migrate'.",
            id="jobrunner.W001",
        )
    ]
