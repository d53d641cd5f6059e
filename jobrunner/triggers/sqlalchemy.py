"""Triggers on SQLAlchemy 2 mapped classes: `where` is a SQLAlchemy expression of the
model's columns; records load through a session factory (`session=`: a `sessionmaker` for a
plain `def` action, an `async_sessionmaker` for an `async def` one), or one built from
jobrunner's database URL on the psycopg (sync) or asyncpg (async) driver."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from typing import Any

from jobrunner.core import threads as _threads
from jobrunner.core.extras import require
from jobrunner.core.job import Job
from jobrunner.triggers.base import (
    GONE,
    NO_MATCH,
    Action,
    Dsn,
    Enqueue,
    Ran,
    TriggerError,
)

sa = require("sqlalchemy", "sqlalchemy")
sa_orm = require("sqlalchemy.orm", "sqlalchemy")
sa_async = require("sqlalchemy.ext.asyncio", "sqlalchemy")
sa_util = require("sqlalchemy.sql.util", "sqlalchemy")
sa_visitors = require("sqlalchemy.sql.visitors", "sqlalchemy")
sa_pg = require("sqlalchemy.dialects.postgresql", "sqlalchemy")

_ENGINES: dict[tuple[str, bool, int], Any] = {}


def is_model(model: Any) -> bool:
    """Whether `model` is a SQLAlchemy mapped class."""
    if not inspect.isclass(model):
        return False
    return sa.inspect(model, raiseerr=False) is not None


class SqlAlchemyAdapter:
    """A mapped class with a single-column primary key and an optional `where`."""

    def __init__(self, model: Any, where: Any, session: Any, *, sync: bool) -> None:
        mapper = sa.inspect(model)
        self.model, self.label = model, f"{model.__module__}.{model.__qualname__}"
        keys = mapper.primary_key
        if len(keys) != 1:
            raise TriggerError(
                f"model {self.label} has a primary key of {len(keys)} columns; a trigger "
                "needs a single-column primary key"
            )
        self.pk_column = keys[0]
        self.pk_name, self.table = self.pk_column.name, mapper.local_table.name
        self._pk_attr = mapper.get_property_by_column(self.pk_column).key
        self.where = _check_where(where, mapper, self.label)
        self.has_where = where is not None
        self._session = _check_session(session, sync=sync)
        self._sync = sync

    def pk_of(self, record: Any) -> Any:
        return getattr(record, self._pk_attr)

    def from_args(self, value: Any) -> Any:
        try:
            python_type = self.pk_column.type.python_type
        except NotImplementedError:
            return value
        if python_type is uuid.UUID and isinstance(value, str):
            return uuid.UUID(value)
        return value

    def _select(self, *columns: Any) -> Any:
        query = sa.select(*columns)
        return query if self.where is None else query.where(self.where)

    def _locked(self, pk: Any) -> Any:
        return self._select(self.model).where(self.pk_column == pk).with_for_update()

    async def run(self, pk: Any, action: Action, job: Job, *, sync: bool, dsn: Dsn) -> Ran:
        factory = self._factory(dsn)
        if sync:
            result: Ran = await _threads.run(self._run_sync, job, factory, pk, action)
            return result
        async with factory() as session, session.begin():
            record = (await session.execute(self._locked(pk))).scalar_one_or_none()
            if record is None:
                found = await session.scalar(sa.select(self.pk_column).where(self.pk_column == pk))
                return Ran(skipped=GONE if found is None else NO_MATCH)
            return Ran(value=await action(record, job))

    def _run_sync(self, job: Job, factory: Any, pk: Any, action: Action) -> Ran:
        with factory() as session, session.begin():
            record = session.execute(self._locked(pk)).scalar_one_or_none()
            if record is None:
                found = session.scalar(sa.select(self.pk_column).where(self.pk_column == pk))
                return Ran(skipped=GONE if found is None else NO_MATCH)
            return Ran(value=action(record, job))

    async def scan(self, after: Any, limit: int, *, dsn: Dsn) -> list[Any]:
        query = self._select(self.pk_column).order_by(self.pk_column).limit(limit)
        if after is not None:
            query = query.where(self.pk_column > after)
        return list(await self._scalars(dsn, query))

    async def count_matching(self, *, dsn: Dsn) -> int:
        query = self._select(sa.func.count()).select_from(self.model)
        return int((await self._scalars(dsn, query))[0])

    async def _scalars(self, dsn: Dsn, query: Any) -> list[Any]:
        """The first column of `query`'s rows, read in a session of the trigger's kind (a
        sync one in a thread)."""
        factory = self._factory(dsn)
        if not self._sync:
            async with factory() as session:
                return list((await session.execute(query)).scalars().all())

        def read() -> list[Any]:
            with factory() as session:
                return list(session.execute(query).scalars().all())

        return await asyncio.to_thread(read)

    def _factory(self, dsn: Dsn) -> Any:
        if self._session is not None:
            return self._session
        engine = _engine(dsn(), sync=self._sync)
        if self._sync:
            return sa_orm.sessionmaker(engine, expire_on_commit=False)
        return sa_async.async_sessionmaker(engine, expire_on_commit=False)

    def where_sql(self) -> str:
        if self.where is None:
            return "true"
        table = self.model.__table__

        def to_new(element: Any) -> Any:
            if isinstance(element, sa.Column) and element.table is table:
                return sa.literal_column(f'NEW."{element.name}"', type_=element.type)
            return None

        replaced = sa_visitors.replacement_traverse(self.where, {}, to_new)
        try:
            compiled = replaced.compile(
                dialect=sa_pg.dialect(), compile_kwargs={"literal_binds": True}
            )
        except Exception as exc:
            raise TriggerError(
                f"the where of the trigger on {self.label} cannot be written in SQL: {exc}"
            ) from None
        return str(compiled)

    def on_write(self, enqueue: Enqueue) -> None:
        _ON_WRITE[enqueue.worker] = (self, enqueue)
        if not sa.event.contains(sa_orm.Session, "after_flush", _after_flush):
            sa.event.listen(sa_orm.Session, "after_flush", _after_flush)

    def enqueue_written(self, session: Any, enqueue: Enqueue) -> None:
        """Insert `enqueue`'s job for each record of this model the flush wrote that matches."""
        keys = [
            self.pk_of(record)
            for record in (*session.new, *session.dirty)
            if isinstance(record, self.model) and self.pk_of(record) is not None
        ]
        if not keys:
            return
        written = self._select(self.pk_column.label("pk")).where(self.pk_column.in_(keys))
        row = written.subquery("written")
        worker, pk = sa.cast(sa.literal(enqueue.worker), sa.Text), sa.func.to_jsonb(row.c.pk)
        call = sa.func.jobrunner_insert_job(
            worker,
            sa.func.jsonb_build_object(sa.literal_column("'pk'"), row.c.pk),
            sa.cast(sa.literal(enqueue.queue), sa.Text),
            sa.cast(sa.literal(enqueue.priority), sa.Integer),
            sa.cast(sa.literal(enqueue.max_attempts), sa.Integer),
            sa.cast(sa.null(), sa.TIMESTAMP(timezone=True)),
            sa.func.jobrunner_trigger_key(worker, pk),
        )
        session.connection().execute(sa.select(call).select_from(row))


_ON_WRITE: dict[str, tuple[SqlAlchemyAdapter, Enqueue]] = {}


def _after_flush(session: Any, flush_context: Any) -> None:
    """Every session's flush: the jobs of the triggers that fire on write (the session's new
    and dirty objects still show what this flush wrote)."""
    for adapter, enqueue in _ON_WRITE.values():
        adapter.enqueue_written(session, enqueue)


def _check_where(where: Any, mapper: Any, label: str) -> Any:
    """`where` if it is a SQL expression on the model's own table(s), else TriggerError."""
    if where is None:
        return None
    if not isinstance(where, sa.sql.ClauseElement) or isinstance(where, sa.sql.Select):
        raise TriggerError(
            f"where must be a SQLAlchemy expression of {label} "
            f"(like {mapper.class_.__name__}.status == 'pending'), got {where!r}"
        )
    own = set(mapper.tables)
    named = {
        getattr(element, "table", None)
        for element in sa_visitors.iterate(where)
        if isinstance(element, sa.sql.ColumnElement)
    }
    named |= set(sa_util.find_tables(where, include_aliases=True))
    others = [t for t in named if t is not None and t not in own]
    if others:
        names = ", ".join(sorted(getattr(t, "name", str(t)) for t in others))
        raise TriggerError(f"where must be an expression of {label}'s columns; it names {names}")
    return where


def _check_session(session: Any, *, sync: bool) -> Any:
    if session is None:
        return None
    is_async = isinstance(session, sa_async.async_sessionmaker)
    if not (is_async or isinstance(session, sa_orm.sessionmaker)):
        raise TriggerError(
            f"session must be a sqlalchemy sessionmaker or async_sessionmaker, got {session!r}"
        )
    if sync and is_async:
        raise TriggerError("a plain 'def' action needs session=sessionmaker(...), not async")
    if not sync and not is_async:
        raise TriggerError("an 'async def' action needs session=async_sessionmaker(...)")
    return session


def _engine(dsn: str, *, sync: bool) -> Any:
    """One engine per database URL and kind (and event loop, for the async ones)."""
    url = sa.engine.make_url(dsn).set(
        drivername="postgresql+psycopg" if sync else "postgresql+asyncpg"
    )
    loop = 0 if sync else id(asyncio.get_running_loop())
    key = (str(url.render_as_string(hide_password=False)), sync, loop)
    engine = _ENGINES.get(key)
    if engine is None:
        engine = sa.create_engine(url) if sync else sa_async.create_async_engine(url)
        _ENGINES[key] = engine
    return engine
