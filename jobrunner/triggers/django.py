"""Triggers on Django models: `where` is a `Q` on the model's fields; records load through
the ORM in a worker thread, inside `transaction.atomic()`, with the connections closed when
broken or old before and after each job, as Django does around a request. An `async def`
action runs in that transaction too (its `sync_to_async` ORM calls come back to the thread
holding it)."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import Callable
from typing import Any

from jobrunner.core import threads as _threads
from jobrunner.core.extras import require
from jobrunner.core.job import Job
from jobrunner.triggers.base import (
    ENQUEUE_SQL,
    GONE,
    NO_MATCH,
    Action,
    Dsn,
    Enqueue,
    Ran,
    TriggerError,
    json_pk,
)

django_models = require("django.db.models", "django")
django_db = require("django.db", "django")


def is_model(model: Any) -> bool:
    """Whether `model` is a Django model class."""
    return inspect.isclass(model) and issubclass(model, django_models.Model)


class DjangoAdapter:
    """A Django model with a single-field primary key and an optional `Q`."""

    def __init__(self, model: Any, where: Any) -> None:
        meta = model._meta
        self.model, self.label = model, meta.label
        pk = meta.pk
        if pk is None or getattr(pk, "fields", None) is not None:  # a CompositePrimaryKey
            raise TriggerError(
                f"model {self.label} has a composite primary key; a trigger needs a "
                "single-column primary key"
            )
        self.pk_name, self.table = pk.column, meta.db_table
        if where is not None and not isinstance(where, django_models.Q):
            raise TriggerError(
                f"where must be a django.db.models.Q on {self.label}'s fields "
                f"(like Q(status='pending')), got {where!r}"
            )
        self.where = where
        self.has_where = where is not None
        self._check_fields()

    def _check_fields(self) -> None:
        """Refuse a `Q` naming fields the model does not have (once the apps are loaded)."""
        if self.where is None:
            return
        from django.apps import apps

        if not apps.ready:
            return
        try:
            self._matching().query  # noqa: B018 - building the query resolves the fields
        except Exception as exc:
            raise TriggerError(f"where is not a Q of {self.label}: {exc}") from None

    def _matching(self) -> Any:
        manager = self.model._default_manager
        return manager.all() if self.where is None else manager.filter(self.where)

    def pk_of(self, record: Any) -> Any:
        return record.pk

    def from_args(self, value: Any) -> Any:
        return value

    async def run(self, pk: Any, action: Action, job: Job, *, sync: bool, dsn: Dsn) -> Ran:
        result: Ran = await _threads.run(self._run_sync, job, pk, action, sync)
        return result

    def _run_sync(self, job: Job, pk: Any, action: Action, sync: bool) -> Ran:
        ran: Ran = _with_connections(lambda: self._in_transaction(job, pk, action, sync))
        return ran

    def _in_transaction(self, job: Job, pk: Any, action: Action, sync: bool) -> Ran:
        with django_db.transaction.atomic():
            record = self._matching().select_for_update().filter(pk=pk).first()
            if record is None:
                gone = not self.model._default_manager.filter(pk=pk).exists()
                return Ran(skipped=GONE if gone else NO_MATCH)
            if sync:
                return Ran(value=action(record, job))
            from asgiref.sync import async_to_sync

            return Ran(value=async_to_sync(action)(record, job))

    async def scan(self, after: Any, limit: int, *, dsn: Dsn) -> list[Any]:
        def read() -> list[Any]:
            found = self._matching().order_by("pk")
            if after is not None:
                found = found.filter(pk__gt=after)
            return list(found.values_list("pk", flat=True)[:limit])

        return await asyncio.to_thread(_with_connections, read)

    async def count_matching(self, *, dsn: Dsn) -> int:
        return int(await asyncio.to_thread(_with_connections, lambda: self._matching().count()))

    def where_sql(self) -> str:
        if self.where is None:
            return "true"
        return str(_with_connections(self._where_sql))

    def _where_sql(self) -> str:
        query = self._matching().query
        connection = django_db.connections[self._matching().db]
        compiler = query.get_compiler(connection=connection)
        try:
            sql, params = query.where.as_sql(compiler, connection)
            text = connection.ops.compose_sql(sql, params)
        except Exception as exc:
            raise TriggerError(
                f"the where of the trigger on {self.label} cannot be written in SQL: {exc}"
            ) from None
        table = re.escape(connection.ops.quote_name(self.table))
        return re.sub(table + r"\.", "NEW.", text)

    def on_write(self, enqueue: Enqueue) -> None:
        def saved(sender: Any, instance: Any, using: str, **kwargs: Any) -> None:
            self.enqueue_saved(instance, using, enqueue)

        django_models.signals.post_save.connect(
            saved, sender=self.model, weak=False, dispatch_uid=f"jobrunner:{enqueue.worker}"
        )

    def enqueue_saved(self, instance: Any, using: str, enqueue: Enqueue) -> None:
        """After a save: the trigger's job if the record matches, on the saving connection
        (in its transaction; a save in autocommit commits the job with it)."""
        if not self._matching().using(using).filter(pk=instance.pk).exists():
            return
        pk = json.dumps(json_pk(instance.pk, self.label))
        with django_db.connections[using].cursor() as cursor:
            cursor.execute(
                ENQUEUE_SQL.format("%s::text", "%s::jsonb", "%s::text", "%s::int", "%s::int"),
                [enqueue.worker, pk, enqueue.queue, enqueue.priority, enqueue.max_attempts,
                 enqueue.worker, pk],
            )  # fmt: skip


def _with_connections(read: Callable[[], Any]) -> Any:
    """Run `read` between two `close_old_connections`, as Django does around a request."""
    django_db.close_old_connections()
    try:
        return read()
    finally:
        django_db.close_old_connections()
