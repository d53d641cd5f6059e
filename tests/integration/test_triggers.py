"""Triggers on SQLAlchemy models, in-process on the real database: definitions and their
errors, on-demand jobs in the caller's transaction, skips, scans, the SQL function."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import ForeignKey, String, bindparam, create_engine
from sqlalchemy.ext.asyncio import (
    AsyncSession,
    async_object_session,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

import jobrunner
from jobrunner import Job
from jobrunner.db.queries import insert as _insert
from jobrunner.testing import (
    assert_enqueued,
    drain_queue,
    perform_job,
    refute_enqueued,
    run_trigger_scan,
)
from jobrunner.triggers import PER_RECORD, TriggerError, create_trigger_sql, trigger
from jobrunner.triggers.base import GONE, NO_MATCH
from tests.apps.trigger_models import (
    TABLE_SQL,
    TriggerOrder,
    confirm_order,
    fail_order,
    process_order,
    ship_order,
)
from tests.helpers import run_cli

pytestmark = pytest.mark.triggers


def _url(dsn: str, driver: str) -> str:
    return dsn.replace("postgresql://", f"postgresql+{driver}://", 1)


@pytest.fixture
async def orders(db: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """The trigger_orders table, empty; `db` empties the jobs after the test."""
    await db.execute(TABLE_SQL)
    await db.execute("TRUNCATE trigger_orders RESTART IDENTITY")
    yield db
    await db.execute("DROP TRIGGER IF EXISTS jobrunner_enqueue_tests_orders_ship ON trigger_orders")
    await db.execute("TRUNCATE trigger_orders RESTART IDENTITY")


@pytest.fixture
def sync_session(dsn: str) -> Any:
    engine = create_engine(_url(dsn, "psycopg"))
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


@pytest.fixture
async def async_session(dsn: str) -> AsyncIterator[Any]:
    engine = create_async_engine(_url(dsn, "asyncpg"))
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


async def _statuses(db: asyncpg.Connection) -> dict[int, tuple[str, int]]:
    rows = await db.fetch("SELECT id, status, runs FROM trigger_orders ORDER BY id")
    return {row["id"]: (row["status"], row["runs"]) for row in rows}


# -- definitions ---------------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class TwoKeys(Base):
    __tablename__ = "trigger_two_keys"
    a: Mapped[int] = mapped_column(primary_key=True)
    b: Mapped[int] = mapped_column(primary_key=True)


class Other(Base):
    __tablename__ = "trigger_other"
    id: Mapped[int] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(String)


class FloatKey(Base):
    __tablename__ = "trigger_float_key"
    id: Mapped[float] = mapped_column(primary_key=True)
    parent: Mapped[int] = mapped_column(ForeignKey("trigger_other.id"))


async def _action(record: Any, job: Job) -> None: ...


@pytest.mark.parametrize(
    ("model", "options", "message"),
    [
        (TwoKeys, {}, r"primary key of 2 columns; a trigger needs a single-column primary key"),
        (TriggerOrder, {"where": Other.state == "x"}, r"expression of .*TriggerOrder's columns; "
         r"it names trigger_other"),
        (TriggerOrder, {"where": "status = 'x'"}, r"where must be a SQLAlchemy expression"),
        (TriggerOrder, {"where": TriggerOrder.status == "x", "cron": "every minute"},
         r"invalid schedule 'every minute'"),
        (TriggerOrder, {"cron": "* * * * *"}, r"needs a where"),
        (object, {}, r"must be a SQLAlchemy mapped class or a Django model"),
        (TriggerOrder, {"session": sessionmaker()}, r"'async def' action needs "
         r"session=async_sessionmaker"),
        (TriggerOrder, {"queue": "bad queue"}, r"queue name must be"),
        (TriggerOrder, {"name": "tests.orders.process"}, r"two triggers are called "
         r"'tests.orders.process'"),
    ],
)  # fmt: skip
def test_a_bad_definition_is_one_clear_error(model: Any, options: Any, message: str) -> None:
    with pytest.raises(TriggerError, match=message):
        trigger(model, name=options.pop("name", "tests.bad"), **options)(_action)
    assert "tests.bad" not in jobrunner.triggers.registered()


def test_a_record_whose_key_is_not_json_is_refused_at_new_for() -> None:
    made = trigger(FloatKey, name="tests.float_key")(_action)
    with pytest.raises(TriggerError, match=r"primary key of type float, which is not JSON"):
        made.new_for(FloatKey(id=1.5, parent=1))
    with pytest.raises(TriggerError, match=r"is on .*FloatKey, got a TriggerOrder"):
        made.new_for(TriggerOrder(id=1))
    with pytest.raises(TriggerError, match=r"has no primary key yet"):
        made.new_for(FloatKey())


def test_new_for_builds_the_job_of_the_record() -> None:
    job = process_order.new_for(TriggerOrder(id=7))
    assert (job.worker, job.args, job.queue, job.max_attempts) == (
        "tests.orders.process", {"pk": 7}, "orders", 3
    )  # fmt: skip
    assert job.unique == PER_RECORD


# -- on demand, in the caller's transaction ------------------------------------------------


async def test_async_session_rollback_leaves_no_job_and_commit_runs_it(
    orders: asyncpg.Connection, client: jobrunner.Client, async_session: Any
) -> None:
    with pytest.raises(RuntimeError):
        async with async_session() as session, session.begin():
            order = TriggerOrder(status="pending")
            session.add(order)
            await session.flush()
            await client.insert(process_order.new_for(order), conn=session)
            raise RuntimeError("the request failed")
    await refute_enqueued(client, worker=process_order)
    assert await _statuses(orders) == {}

    async with async_session() as session, session.begin():
        order = TriggerOrder(status="pending")
        session.add(order)
        await session.flush()
        await client.insert(process_order.new_for(order), conn=session)
    await assert_enqueued(client, worker=process_order, args={"pk": order.id})
    assert (await drain_queue(client, "orders")).completed == 1
    assert await _statuses(orders) == {order.id: ("done", 1)}


async def test_sync_session_commit_runs_a_plain_def_action(
    orders: asyncpg.Connection, client: jobrunner.Client, dsn: str, sync_session: Any
) -> None:
    with jobrunner.connect_sync(dsn) as sync_client, sync_session() as session:
        order = TriggerOrder(status="paid")
        session.add(order)
        session.flush()
        job = sync_client.insert(ship_order.new_for(order), conn=session)
        assert await client.get_job(job.id) is None  # not before the commit
        session.commit()
    assert (await drain_queue(client, "orders")).completed == 1
    assert await _statuses(orders) == {order.id: ("shipped", 1)}


# -- running: skips, failures --------------------------------------------------------------


async def test_a_record_moved_out_of_where_or_gone_is_skipped_with_the_reason(
    orders: asyncpg.Connection, client: jobrunner.Client
) -> None:
    ids = [await orders.fetchval("INSERT INTO trigger_orders DEFAULT VALUES RETURNING id")
           for _ in range(3)]  # fmt: skip
    jobs = await client.insert_all([process_order.new_for(TriggerOrder(id=i)) for i in ids])
    await orders.execute("UPDATE trigger_orders SET status = 'cancelled' WHERE id = $1", ids[0])
    await orders.execute("DELETE FROM trigger_orders WHERE id = $1", ids[1])

    assert (await drain_queue(client, "orders")).completed == 3
    done = {job.id: await client.get_job(job.id) for job in jobs}
    assert done[jobs[0].id].meta == {"skipped": NO_MATCH}  # type: ignore[union-attr]
    assert done[jobs[1].id].meta == {"skipped": GONE}  # type: ignore[union-attr]
    assert "skipped" not in done[jobs[2].id].meta  # type: ignore[union-attr]
    assert await _statuses(orders) == {ids[0]: ("cancelled", 0), ids[2]: ("done", 1)}


async def test_a_failing_action_rolls_its_changes_back_and_retries(
    orders: asyncpg.Connection, client: jobrunner.Client
) -> None:
    order_id = await orders.fetchval(
        "INSERT INTO trigger_orders (status) VALUES ('failing') RETURNING id"
    )
    job = await client.insert(fail_order.new_for(TriggerOrder(id=order_id)))
    result = await drain_queue(client, "default")
    assert result.failure == 1
    failed = await client.get_job(job.id)
    assert failed is not None and failed.state == "retryable"
    assert "the action failed" in failed.errors[-1].error
    assert await _statuses(orders) == {order_id: ("failing", 0)}


# -- scheduled scans ------------------------------------------------------------------------


async def test_a_scan_pages_through_matching_records_once_per_incomplete_job(
    orders: asyncpg.Connection, client: jobrunner.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    await orders.execute(
        "INSERT INTO trigger_orders (status) SELECT CASE WHEN i % 3 = 0 THEN 'done' "
        "ELSE 'pending' END FROM generate_series(1, 30) i"
    )
    monkeypatch.setattr(process_order, "page_size", 7)
    first = await run_trigger_scan(client, process_order)
    assert (first.matched, first.inserted, first.pages) == (20, 20, 3)
    again = await run_trigger_scan(client, "tests.orders.process")
    assert (again.matched, again.inserted) == (20, 0)  # each record's job is still waiting
    await assert_enqueued(client, worker=process_order, args={"pk": 1})
    await refute_enqueued(client, worker=process_order, args={"pk": 3})

    assert (await drain_queue(client, "orders")).completed == 20
    statuses = await _statuses(orders)
    assert all(s == ("done", 1) for i, s in statuses.items() if i % 3), statuses
    assert (await run_trigger_scan(client, process_order)).matched == 0


async def test_scheduled_trigger_runs_from_the_crontab_of_a_runner(
    orders: asyncpg.Connection, client: jobrunner.Client, make_runner: Any
) -> None:
    await orders.execute("INSERT INTO trigger_orders (status) VALUES ('pending'), ('done')")
    async with make_runner(queues={"orders": 5}):

        async def processed() -> bool:
            return await orders.fetchval("SELECT runs FROM trigger_orders WHERE id = 1") == 1

        await _eventually(processed)
    scans = await orders.fetchval(
        "SELECT count(*) FROM jobrunner_jobs WHERE worker = 'tests.orders.process:scan' "
        "AND meta ->> 'cron' = 'trigger:tests.orders.process'"
    )
    assert scans >= 1
    assert await _statuses(orders) == {1: ("done", 1), 2: ("done", 0)}


async def _eventually(check: Any, timeout_s: float = 20.0) -> None:
    from tests.helpers import eventually

    await eventually(check, timeout_s=timeout_s)


# -- any writer: the SQL function -----------------------------------------------------------


@pytest.mark.parametrize("pk", [7, 2**40, "order-7", str(uuid.UUID(int=7))])
async def test_the_sql_key_is_the_clients_key(orders: asyncpg.Connection, pk: Any) -> None:
    job = process_order.new({"pk": pk})
    in_sql = await orders.fetchval(
        "SELECT jobrunner_trigger_key($1, $2::jsonb)", process_order.name, json.dumps(pk)
    )
    assert in_sql == _insert.unique_key(job)


async def test_insert_job_function_enqueues_in_the_callers_transaction(
    orders: asyncpg.Connection, client: jobrunner.Client
) -> None:
    await orders.execute("LISTEN jobrunner_insert")
    heard: asyncio.Queue[str] = asyncio.Queue()
    await orders.add_listener("jobrunner_insert", lambda *a: heard.put_nowait(a[3]))
    async with orders.transaction():
        first = await orders.fetchval(
            "SELECT jobrunner_insert_job('tests.orders.process', '{\"pk\": 1}', "
            "queue => 'orders', unique_key => jobrunner_trigger_key('tests.orders.process', '1'))"
        )
        again = await orders.fetchval(
            "SELECT jobrunner_insert_job('tests.orders.process', '{\"pk\": 1}', "
            "queue => 'orders', unique_key => jobrunner_trigger_key('tests.orders.process', '1'))"
        )
        assert heard.empty()  # NOTIFY is delivered at commit
    assert first is not None and again is None
    assert await asyncio.wait_for(heard.get(), 5) == "orders"
    clash = await client.insert(process_order.new({"pk": 1}))
    assert clash.conflict and clash.id == first
    with pytest.raises(asyncpg.PostgresError):
        async with orders.transaction():
            await orders.execute("SELECT jobrunner_insert_job('w', '[1]')")
            raise AssertionError("unreachable")


async def test_a_row_written_with_plain_sql_is_processed_through_the_printed_trigger(
    orders: asyncpg.Connection, client: jobrunner.Client, dsn: str
) -> None:
    printed = run_cli("triggers", "sql", "tests.orders.ship", "--app", "tests.apps.trigger_models")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == create_trigger_sql(ship_order)
    await orders.execute(printed.stdout)
    async with orders.transaction():
        order_id = await orders.fetchval(
            "INSERT INTO trigger_orders (status) VALUES ('paid') RETURNING id"
        )
        await orders.execute("UPDATE trigger_orders SET runs = 0 WHERE id = $1", order_id)
    await orders.execute("INSERT INTO trigger_orders (status) VALUES ('pending')")
    job = await assert_enqueued(client, worker=ship_order, args={"pk": order_id})
    assert job.queue == "orders"
    assert (await drain_queue(client, "orders")).completed == 1  # one job for two writes
    assert (await _statuses(orders))[order_id] == ("shipped", 1)


def test_triggers_sql_refuses_an_unknown_trigger_in_one_line() -> None:
    result = run_cli("triggers", "sql", "nope", "--app", "tests.apps.trigger_models")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown trigger 'nope'; known: tests.orders.confirm, tests.orders.fail, "
        "tests.orders.process, tests.orders.ship"
    ]


async def test_triggers_list_and_run_from_the_cli(
    orders: asyncpg.Connection, client: jobrunner.Client, dsn: str
) -> None:
    await orders.execute("INSERT INTO trigger_orders (status) VALUES ('pending'), ('pending')")
    app = ("--app", "tests.apps.trigger_models")
    ran = run_cli("triggers", "run", "tests.orders.process", *app, "--json", dsn=dsn)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == {"trigger": "tests.orders.process", "matched": 2,
                                      "inserted": 2}  # fmt: skip
    listed = run_cli("triggers", "list", *app, "--json", dsn=dsn)
    assert listed.returncode == 0, listed.stderr
    by_name = {t["name"]: t for t in json.loads(listed.stdout)}
    assert by_name["tests.orders.process"] == {
        "name": "tests.orders.process",
        "model": "tests.apps.trigger_models.TriggerOrder",
        "queue": "orders",
        "schedule": "* * * * * * (UTC)",
        "last_slot": None,
        "matched": 2,
        "incomplete": 2,
    }
    assert by_name["tests.orders.ship"]["schedule"] is None
    text = run_cli("triggers", "list", *app, dsn=dsn)
    assert text.stdout.splitlines()[0].split() == [
        "NAME", "MODEL", "QUEUE", "SCHEDULE", "LAST", "SLOT", "MATCHED", "INCOMPLETE"
    ]  # fmt: skip
    no_app = run_cli("triggers", "list", dsn=dsn, env={"JOBRUNNER_APP": ""})
    assert no_app.returncode == 2 and no_app.stderr.startswith("error: no trigger is defined")


class CountingSessions(async_sessionmaker[AsyncSession]):
    """An async_sessionmaker that counts the sessions it makes."""

    made = 0

    def __call__(self, **local_kw: Any) -> AsyncSession:
        self.made += 1
        return super().__call__(**local_kw)


async def test_the_session_factory_given_to_the_trigger_loads_the_records(
    orders: asyncpg.Connection, client: jobrunner.Client, async_session: Any
) -> None:
    sessions = CountingSessions(async_session.kw["bind"], expire_on_commit=False)

    @trigger(TriggerOrder, where=TriggerOrder.status == "pending", session=sessions,
             name="tests.orders.with_session", queue="sessions")  # fmt: skip
    async def with_session(order: TriggerOrder, job: Job) -> None:
        order.status = "seen"

    order_id = await orders.fetchval("INSERT INTO trigger_orders DEFAULT VALUES RETURNING id")
    await client.insert(with_session.new_for(TriggerOrder(id=order_id)))
    assert (await drain_queue(client, "sessions")).completed == 1
    assert (await _statuses(orders))[order_id] == ("seen", 0)
    assert sessions.made == 1


@trigger(TriggerOrder, where=TriggerOrder.status == "new", queue="machine", name="tests.sm.start")
async def start(order: TriggerOrder, job: Job) -> None:
    order.status = "processing"
    session = async_object_session(order)  # the job's own session: finish commits with this
    await jobrunner.current_client().insert(finish.new_for(order), conn=session)


@trigger(TriggerOrder, where=TriggerOrder.status == "processing", queue="machine",
         name="tests.sm.finish")  # fmt: skip
async def finish(order: TriggerOrder, job: Job) -> None:
    order.status = "finished"
    order.runs += 1


async def test_a_transition_enqueues_the_next_one_in_its_own_transaction(
    orders: asyncpg.Connection, client: jobrunner.Client
) -> None:
    order_id = await orders.fetchval(
        "INSERT INTO trigger_orders (status) VALUES ('new') RETURNING id"
    )
    await client.insert(start.new_for(TriggerOrder(id=order_id)))
    result = await drain_queue(client, "machine", with_recursion=True)
    assert result.completed == 2
    assert await _statuses(orders) == {order_id: ("finished", 1)}
    jobs = await client.list_jobs(worker="tests.sm.finish")
    assert [j.meta for j in jobs] == [{}]  # ran, not skipped


async def test_perform_job_runs_a_trigger_with_a_connected_client(
    orders: asyncpg.Connection, client: jobrunner.Client
) -> None:
    order_id = await orders.fetchval("INSERT INTO trigger_orders DEFAULT VALUES RETURNING id")
    with pytest.raises(jobrunner.JobRunnerError, match=r"perform_job\(\.\.\., client=client\)"):
        await perform_job(process_order, {"pk": order_id})
    assert await perform_job(process_order, {"pk": order_id}, client=client) is None
    assert await perform_job(process_order, {"pk": order_id}, client=client) is None  # skipped
    assert await _statuses(orders) == {order_id: ("done", 1)}


# -- on write: through the ORM's own events --------------------------------------------------


async def test_on_write_enqueues_in_the_flush_of_a_matching_record(
    orders: asyncpg.Connection, client: jobrunner.Client, async_session: Any
) -> None:
    with pytest.raises(RuntimeError):
        async with async_session() as session, session.begin():
            session.add(TriggerOrder(status="placed"))
            await session.flush()
            raise RuntimeError("the request failed")
    await refute_enqueued(client, worker=confirm_order)

    async with async_session() as session, session.begin():
        placed, other = TriggerOrder(status="placed"), TriggerOrder(status="pending")
        session.add_all([placed, other])
    await assert_enqueued(client, worker=confirm_order, args={"pk": placed.id})
    await refute_enqueued(client, worker=confirm_order, args={"pk": other.id})

    async with async_session() as session, session.begin():
        moved = await session.get(TriggerOrder, other.id)
        assert moved is not None
        moved.status = "placed"  # an update into where
        again = await session.get(TriggerOrder, placed.id)
        assert again is not None
        again.runs = 0  # still placed: its job is waiting, no second one
    assert len(await client.list_jobs(worker="tests.orders.confirm")) == 2
    assert (await drain_queue(client, "orders")).completed == 2
    assert await _statuses(orders) == {placed.id: ("confirmed", 1), other.id: ("confirmed", 1)}


def test_on_write_with_a_sync_session(
    orders: asyncpg.Connection, dsn: str, sync_session: Any
) -> None:
    with sync_session() as session:
        order = TriggerOrder(status="placed")
        session.add(order)
        session.commit()
    with jobrunner.connect_sync(dsn) as client:
        jobs = client.list_jobs(worker="tests.orders.confirm")
    assert [job.args for job in jobs] == [{"pk": order.id}]


def test_on_write_refuses_a_unique_of_its_own() -> None:
    with pytest.raises(TriggerError, match=r"on_write enqueues with the default unique"):
        trigger(TriggerOrder, where=TriggerOrder.status == "x", on_write=True,
                unique=jobrunner.Unique(period=60), name="tests.bad")(_action)  # fmt: skip


def test_triggers_sql_refuses_what_cannot_be_written_in_sql() -> None:
    unrenderable = trigger(
        TriggerOrder, where=TriggerOrder.status == bindparam("wanted"), name="tests.unrenderable"
    )(_action)
    with pytest.raises(TriggerError, match=r"cannot be written in SQL: .*'wanted'"):
        create_trigger_sql(unrenderable)
    own_unique = trigger(TriggerOrder, unique=jobrunner.Unique(period=60), name="tests.own_unique")(
        _action
    )
    with pytest.raises(TriggerError, match=r"has its own unique="):
        create_trigger_sql(own_unique)


def test_triggers_run_refuses_a_trigger_without_where(dsn: str) -> None:
    result = run_cli(
        "triggers", "run", "tests.orders.everything", "--app", "tests.apps.trigger_models",
        "--app", "tests.apps.trigger_everything", dsn=dsn,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: trigger 'tests.orders.everything' has no where to scan for; enqueue it with "
        "new_for(record)"
    )
