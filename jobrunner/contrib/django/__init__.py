"""Django: enqueue on Django's own connection, install the schema with `manage.py migrate`,
and run workers that use the ORM as a request does.

`INSTALLED_APPS += ["jobrunner.contrib.django"]`; then `python manage.py migrate` applies
jobrunner's SQL migrations, and in a view:

    with transaction.atomic():
        order = Order.objects.create(...)
        client.insert(ship_order.new({"order_id": order.id}), conn=connection)

where `client` is a `jobrunner.connect_sync()` client opened once per process. The job commits
with the order, or not at all. Django must run on psycopg 3 (`jobrunner[django]`).

Django's Tasks framework runs on jobrunner through `JobrunnerBackend` (settings.TASKS), and
`python manage.py jobrunner start` runs its tasks.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from jobrunner.core.errors import InvalidConnection
from jobrunner.core.extras import require

django = require("django", "django")

F = TypeVar("F", bound=Callable[..., Any])

_LAZY = ("JobrunnerBackend", "JobrunnerTask", "job_options", "to_jobrunner_priority")


def __getattr__(name: str) -> Any:
    """The Tasks backend's names, imported when first used (they need Django's settings)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from jobrunner.contrib.django import backend

    return getattr(backend, name)


def driver_connection(conn: Any, *, atomic: bool = True) -> Any:
    """The psycopg connection under Django's connection `conn`, inside `transaction.atomic()`
    (or, with `atomic=False`, in autocommit mode when outside it)."""
    if getattr(conn, "vendor", None) != "postgresql":
        raise InvalidConnection(
            f"jobrunner needs a PostgreSQL database, got Django's {conn.vendor!r} connection"
        )
    if atomic and not conn.in_atomic_block:
        raise InvalidConnection(
            "Django's connection is not in a transaction: insert the job inside "
            "'with transaction.atomic():', so that it commits with your rows"
        )
    if conn.in_atomic_block and conn.needs_rollback:
        raise InvalidConnection(
            "the transaction.atomic() block is marked for rollback (an error happened in it); "
            "the job would be lost with it"
        )
    conn.ensure_connection()
    raw = conn.connection
    if type(raw).__module__.partition(".")[0] != "psycopg":
        raise InvalidConnection(
            "jobrunner takes Django connections on psycopg 3; "
            f"this one runs on {type(raw).__module__.partition('.')[0]!r}: pip install psycopg"
        )
    return raw


def orm_safe(function: F) -> F:
    """Run a worker as Django runs a request: connections that are broken or past
    CONN_MAX_AGE are closed before and after each job (`close_old_connections`).

    Put it under `@worker`, on a sync function worker (run in the runner's threads) or on an
    async one whose ORM calls go through `asgiref.sync.sync_to_async`.

    Example:
        >>> @worker(queue="orders")
        ... @orm_safe
        ... def ship_order(job: Job) -> None:
        ...     Order.objects.filter(id=job.args["order_id"]).update(shipped=True)
    """
    from django.db import close_old_connections

    if inspect.iscoroutinefunction(function):
        from asgiref.sync import sync_to_async

        close = sync_to_async(close_old_connections)

        @functools.wraps(function)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            await close()
            try:
                return await function(*args, **kwargs)
            finally:
                await close()

        return run_async  # type: ignore[return-value]

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()

    return run  # type: ignore[return-value]
