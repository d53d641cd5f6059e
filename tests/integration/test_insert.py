"""Inserting jobs: every field round-trips, one statement for many, the caller's transaction,
the NOTIFY that wakes a daemon, and get/cancel/retry."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jobrunner
from jobrunner import InvalidJob, Job, JobNotFound, JobState, NewJob, worker
from jobrunner.db import queries as _queries


@worker(queue="mail", name="insert_tests.send", max_attempts=4, priority=2, tags=["t1"])
async def send(job: Job) -> None: ...


@worker(name="insert_tests.plain")
async def plain(job: Job) -> None: ...


class CountingConn:
    """A pool that counts the statements sent through it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.statements = 0

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Any]:
        self.statements += 1
        return await self.pool.fetch(query, *args, timeout=timeout)


@pytest.fixture
async def listener(dsn: str) -> AsyncIterator[asyncio.Queue[str]]:
    """The payloads of jobrunner_insert notifications, in commit order."""
    conn = await asyncpg.connect(dsn)
    payloads: asyncio.Queue[str] = asyncio.Queue()
    await conn.add_listener("jobrunner_insert", lambda *a: payloads.put_nowait(a[3]))
    try:
        yield payloads
    finally:
        await conn.close()


async def db_now(db: asyncpg.Connection) -> datetime:
    now: datetime = await db.fetchval("SELECT now()")
    return now


async def test_insert_round_trips_every_field(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    args = {
        "user_id": 42,
        "name": "Zoë 🚀",
        "nested": {"list": [1, 2.5, None, True, "x"]},
        "big": 2**70,
        "empty": {},
        "quote": 'it\'s "quoted"; DROP TABLE x; --',
    }
    meta = {"trace": "abc", "n": [1]}
    at = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    before = await db_now(db)
    job = await client.insert(
        send.new(
            args,
            queue="other",
            priority=9,
            max_attempts=3,
            tags=["a", "b c"],
            meta=meta,
            scheduled_at=at,
        )
    )
    assert isinstance(job.id, int) and job.id > 0
    assert job.state is JobState.SCHEDULED
    assert (job.queue, job.worker, job.args, job.meta) == ("other", "insert_tests.send", args, meta)
    assert job.tags == ("a", "b c")
    assert (job.priority, job.max_attempts, job.attempt) == (9, 3, 0)
    assert job.scheduled_at == at
    assert job.inserted_at is not None and job.inserted_at >= before
    assert job.errors == () and job.attempted_by == ()
    assert job.attempted_at is job.completed_at is job.discarded_at is job.cancelled_at is None
    assert job.unique_key is None and job.conflict is False
    assert await client.get_job(job.id) == job
    stored = await db.fetchrow("SELECT args, meta, tags FROM jobrunner_jobs WHERE id = $1", job.id)
    assert stored["tags"] == ["a", "b c"]
    assert '"big": 1180591620717411303424' in stored["args"]


async def test_insert_uses_worker_defaults(client: jobrunner.Client) -> None:
    job = await client.insert(send.new({"n": 1}))
    assert (job.queue, job.priority, job.max_attempts, job.tags) == ("mail", 2, 4, ("t1",))
    assert job.state is JobState.AVAILABLE and job.meta == {}
    default = await client.insert(plain.new())
    assert (default.queue, default.priority, default.max_attempts) == ("default", 0, 20)
    assert default.args == {} and default.tags == ()


async def test_schedule_in_and_scheduled_at(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    before = await db_now(db)
    later = await client.insert(plain.new({}, schedule_in=90))
    after = await db_now(db)
    assert later.state is JobState.SCHEDULED
    assert later.scheduled_at is not None
    assert before + timedelta(seconds=90) <= later.scheduled_at <= after + timedelta(seconds=90)

    now_job = await client.insert(plain.new({}, schedule_in=0))
    assert now_job.state is JobState.AVAILABLE

    past = before - timedelta(hours=2)
    overdue = await client.insert(plain.new({}, scheduled_at=past))
    assert overdue.state is JobState.AVAILABLE and overdue.scheduled_at == past

    fractional = await client.insert(plain.new({}, schedule_in=0.25))
    assert fractional.scheduled_at is not None and fractional.inserted_at is not None
    assert fractional.scheduled_at - fractional.inserted_at == timedelta(seconds=0.25)


async def test_insert_all_round_trips_in_order_in_one_statement(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    at = datetime(2032, 1, 1, tzinfo=UTC)
    new_jobs = [
        send.new(
            {"i": i},
            queue=f"q{i % 3}",
            priority=i % 10,
            max_attempts=1 + i % 5,
            tags=[f"t{i}"],
            meta={"m": i},
            scheduled_at=at if i % 4 == 0 else None,
        )
        for i in range(500)
    ]
    counting = CountingConn(client.pool)
    jobs = await client.insert_all(new_jobs, conn=counting)
    assert counting.statements == 1
    assert len(jobs) == 500
    ids = [j.id for j in jobs]
    assert ids == sorted(ids) and len(set(ids)) == 500
    for i, (new, job) in enumerate(zip(new_jobs, jobs, strict=True)):
        assert job.args == {"i": i} == new.args
        assert (job.queue, job.priority, job.max_attempts) == (
            new.queue,
            new.priority,
            new.max_attempts,
        )
        assert job.tags == (f"t{i}",) and job.meta == {"m": i}
        expected = JobState.SCHEDULED if i % 4 == 0 else JobState.AVAILABLE
        assert job.state is expected
    assert await db.fetchval("SELECT count(*) FROM jobrunner_jobs") == 500
    assert await client.get_job(jobs[123].id) == jobs[123]


async def test_insert_all_of_nothing_sends_nothing(client: jobrunner.Client) -> None:
    counting = CountingConn(client.pool)
    assert await client.insert_all([], conn=counting) == []
    assert await client.insert_all(iter(()), conn=counting) == []
    assert counting.statements == 0


async def test_insert_takes_only_new_jobs(client: jobrunner.Client, db: asyncpg.Connection) -> None:
    with pytest.raises(InvalidJob, match=r"insert takes jobs built with worker\.new"):
        await client.insert({"worker": "x"})  # type: ignore[arg-type]
    with pytest.raises(InvalidJob, match=r"insert takes jobs built with worker\.new"):
        await client.insert_all([plain.new({}), "job"])  # type: ignore[list-item]
    assert await db.fetchval("SELECT count(*) FROM jobrunner_jobs") == 0


async def test_new_job_without_a_worker_object(client: jobrunner.Client) -> None:
    """NewJob by name: a worker deployed elsewhere (the daemon resolves it by name)."""
    job = await client.insert(NewJob(worker="elsewhere.task", args={"a": 1}, queue="remote"))
    assert (job.worker, job.queue, job.state) == ("elsewhere.task", "remote", JobState.AVAILABLE)


async def test_insert_in_the_callers_transaction_commits_with_it(
    client: jobrunner.Client, db: asyncpg.Connection, listener: asyncio.Queue[str]
) -> None:
    async with client.pool.acquire() as conn, conn.transaction():
        await conn.execute("CREATE TEMP TABLE users (id int)")
        await conn.execute("INSERT INTO users VALUES (7)")
        job = await client.insert(send.new({"user_id": 7}), conn=conn)
        assert await db.fetchval("SELECT count(*) FROM jobrunner_jobs") == 0  # not yet visible
        assert listener.empty()
    assert await client.get_job(job.id) == job
    assert await asyncio.wait_for(listener.get(), 10) == "mail"


async def test_insert_in_the_callers_transaction_rolls_back_with_it(
    client: jobrunner.Client, db: asyncpg.Connection, listener: asyncio.Queue[str]
) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with client.pool.acquire() as conn, conn.transaction():
            rolled = await client.insert(send.new({"user_id": 8}, queue="rolled"), conn=conn)
            await client.insert_all(
                [plain.new({"i": i}, queue="rolled") for i in range(3)], conn=conn
            )
            raise Boom
    assert await client.get_job(rolled.id) is None
    assert await db.fetchval("SELECT count(*) FROM jobrunner_jobs") == 0
    # Notifications arrive in commit order: once the marker's arrived, the rolled-back one
    # would have been delivered before it, had it been sent.
    await client.insert(plain.new({}, queue="marker"))
    assert await asyncio.wait_for(listener.get(), 10) == "marker"


async def test_notify_wakes_each_queue_once_and_not_for_scheduled_jobs(
    client: jobrunner.Client, listener: asyncio.Queue[str]
) -> None:
    await client.insert_all(
        [
            plain.new({}, queue="a"),
            plain.new({}, queue="b"),
            plain.new({}, queue="a"),
            plain.new({}, queue="later", schedule_in=600),
        ]
    )
    await client.insert(plain.new({}, queue="marker"))
    got = [await asyncio.wait_for(listener.get(), 10) for _ in range(3)]
    assert sorted(got[:2]) == ["a", "b"] and got[2] == "marker"
    assert listener.empty()


async def test_get_job_of_unknown_id(client: jobrunner.Client) -> None:
    assert await client.get_job(987654321) is None


async def test_cancel_job(client: jobrunner.Client, db: asyncpg.Connection) -> None:
    job = await client.insert(plain.new({}, schedule_in=60))
    cancelled = await client.cancel_job(job.id)
    assert cancelled.state is JobState.CANCELLED and cancelled.cancelled_at is not None
    assert await client.get_job(job.id) == cancelled
    again = await client.cancel_job(job.id)  # already finished: returned as it is
    assert again == cancelled

    done = await client.insert(plain.new({}))
    await db.execute(
        "UPDATE jobrunner_jobs SET state = 'completed', completed_at = now() WHERE id = $1", done.id
    )
    kept = await client.cancel_job(done.id)
    assert kept.state is JobState.COMPLETED and kept.cancelled_at is None

    with pytest.raises(JobNotFound, match="no job with id 987654321"):
        await client.cancel_job(987654321)


async def test_retry_job(
    client: jobrunner.Client, db: asyncpg.Connection, listener: asyncio.Queue[str]
) -> None:
    job = await client.insert(plain.new({}, queue="again", max_attempts=2))
    await db.execute(
        "UPDATE jobrunner_jobs SET state = 'discarded', discarded_at = now(), attempt = 2, "
        "scheduled_at = now() - interval '1 day' WHERE id = $1",
        job.id,
    )
    assert await asyncio.wait_for(listener.get(), 10) == "again"  # the insert's
    retried = await client.retry_job(job.id)
    assert retried.state is JobState.AVAILABLE
    assert retried.discarded_at is None and retried.attempt == 2
    assert retried.max_attempts == 3  # one more attempt than it has used
    assert retried.scheduled_at is not None and job.scheduled_at is not None
    assert retried.scheduled_at > job.scheduled_at
    assert await asyncio.wait_for(listener.get(), 10) == "again"

    await db.execute("UPDATE jobrunner_jobs SET state = 'executing' WHERE id = $1", job.id)
    running = await client.retry_job(job.id)
    assert running.state is JobState.EXECUTING

    with pytest.raises(JobNotFound, match="no job with id 987654321"):
        await client.retry_job(987654321)


async def test_args_are_stored_as_jsonb_objects(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    job = await client.insert(plain.new({"k": "v"}))
    kind = await db.fetchval("SELECT jsonb_typeof(args) FROM jobrunner_jobs WHERE id = $1", job.id)
    assert kind == "object"
    assert await db.fetchval("SELECT args->>'k' FROM jobrunner_jobs WHERE id = $1", job.id) == "v"


# --- what an insert returns is what get_job reads back ---------------------------------------

AT = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
PAST = datetime(2020, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
FIELD_CASES = [
    {},
    {"queue": "other", "priority": 9, "max_attempts": 3},
    {"tags": ["a", "b c", "ü"], "meta": {"trace": "abc", "n": [1, {"x": None}]}},
    {"scheduled_at": AT},
    {"scheduled_at": PAST},
    {"schedule_in": 90},
    {"schedule_in": 0.25},
    {"schedule_in": 0},
]


async def assert_as_stored(client: jobrunner.Client, jobs: list[Job]) -> None:
    for job in jobs:
        assert await client.get_job(job.id) == job


@pytest.mark.parametrize("fields", FIELD_CASES)
async def test_an_insert_returns_the_job_as_stored(
    client: jobrunner.Client, fields: dict[str, Any]
) -> None:
    new = send.new({"user_id": 7, "name": "Zoë"}, **fields)
    job = await client.insert(new)
    assert (job.attempt, job.errors, job.attempted_by, job.unique_key) == (0, (), (), None)
    assert job.args == new.args and job.args is not new.args
    assert job.meta == new.meta and job.meta is not new.meta
    await assert_as_stored(client, [job])


async def test_insert_all_returns_the_jobs_as_stored_in_order(client: jobrunner.Client) -> None:
    new_jobs = [send.new({"i": i}, **FIELD_CASES[i % len(FIELD_CASES)]) for i in range(40)]
    jobs = await client.insert_all(new_jobs)
    assert [j.args for j in jobs] == [{"i": i} for i in range(40)]
    assert [j.id for j in jobs] == sorted(j.id for j in jobs)
    await assert_as_stored(client, jobs)


@pytest.mark.parametrize(
    "options",
    [
        {},  # every column but args the same: sent once
        {"tags": ["x"], "meta": {"m": 1}, "priority": 3, "queue": "same"},
        {"scheduled_at": AT},
        {"schedule_in": 60},
    ],
)
async def test_insert_all_of_jobs_that_share_their_options(
    client: jobrunner.Client, options: dict[str, Any]
) -> None:
    jobs = await client.insert_all([plain.new({"i": i}, **options) for i in range(5)])
    assert [j.args for j in jobs] == [{"i": i} for i in range(5)]
    assert len({j.state for j in jobs}) == 1
    await assert_as_stored(client, jobs)


async def test_concurrent_insert_alls_each_get_their_own_jobs_back(
    client: jobrunner.Client,
) -> None:
    """The ids of concurrent batches interleave; each batch's are still in its own order."""
    batches = [[plain.new({"b": b, "i": i}) for i in range(200)] for b in range(8)]
    results = await asyncio.gather(*(client.insert_all(batch) for batch in batches))
    for b, jobs in enumerate(results):
        assert [j.args for j in jobs] == [{"b": b, "i": i} for i in range(200)]
        await assert_as_stored(client, jobs[::37])


@pytest.mark.parametrize(
    "args",
    [
        {"big": 2**70, "negative": -(2**64), "max": 2**64 - 1},
        {"f": 1e16, "g": 1.5e300, "h": -2.5e22, "small": 1e-7, "z": -0.0, "one": 1.0},
        {"nested": [{"f": 1e20}, [1.25e17, 3.0]], "text": "1e+16"},
    ],
)
async def test_numbers_come_back_as_get_job_reads_them(
    client: jobrunner.Client, args: dict[str, Any]
) -> None:
    """jsonb writes a number with a positive exponent out in full, so it reads back as an
    integer; an insert returns what get_job will return."""
    single = await client.insert(plain.new(args, meta=args))
    [first, second] = await client.insert_all([plain.new(args), plain.new(args, meta=args)])
    for job in (single, first, second):
        stored = await client.get_job(job.id)
        assert stored == job
        assert stored is not None and typed(stored.args) == typed(job.args)
        assert typed(stored.meta) == typed(job.meta)


def typed(value: Any) -> Any:
    """A JSON value with each number's type, so that 1 and 1.0 differ."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return (type(value).__name__, value)


async def test_a_batch_with_a_unique_job_keeps_its_order(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    from jobrunner import Unique

    unique = Unique(period=60)
    first = await client.insert(plain.new({"u": 1}, unique=unique))
    batch = [
        plain.new({"i": 0}),
        plain.new({"u": 1}, unique=unique),
        plain.new({"i": 2}, tags=["t"]),
        plain.new({"u": 3}, unique=unique),
        plain.new({"i": 4}, schedule_in=60),
    ]
    jobs = await client.insert_all(batch)
    assert [j.args for j in jobs] == [{"i": 0}, {"u": 1}, {"i": 2}, {"u": 3}, {"i": 4}]
    assert [j.conflict for j in jobs] == [False, True, False, False, False]
    assert jobs[1].id == first.id
    assert [j.unique_key is None for j in jobs] == [True, False, True, False, True]
    await assert_as_stored(client, [j for j in jobs if not j.conflict])
    assert await db.fetchval("SELECT count(*) FROM jobrunner_jobs") == 5


async def test_a_single_scheduled_job_wakes_no_queue(
    client: jobrunner.Client, listener: asyncio.Queue[str]
) -> None:
    await client.insert(plain.new({}, queue="later", schedule_in=600))
    await client.insert(plain.new({}, queue="later", scheduled_at=AT))
    await client.insert(plain.new({}, queue="overdue", scheduled_at=PAST))
    assert await asyncio.wait_for(listener.get(), 10) == "overdue"
    assert listener.empty()


async def test_a_job_the_database_refuses_alone_raises_invalid_job(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    with pytest.raises(InvalidJob, match="the database refused the job"):
        await client.insert(plain.new({}, tags=["\udc80"]))
    assert await db.fetchval("SELECT count(*) FROM jobrunner_jobs") == 0


_NUMBERS = st.integers(min_value=-(2**80), max_value=2**80) | st.floats(
    allow_nan=False, allow_infinity=False
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)


_VALUES = st.recursive(
    _NUMBERS | st.none() | st.booleans() | st.text(max_size=5).filter(lambda t: "\x00" not in t),
    _containers,
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(args=st.dictionaries(st.text(max_size=4), _VALUES, max_size=5))
def test_any_number_comes_back_as_get_job_reads_it(dsn: str, args: dict[str, Any]) -> None:
    async def check() -> None:
        try:
            new = NewJob(worker="prop", args=args, meta=args, queue="numbers")
        except InvalidJob:
            return  # text PostgreSQL refuses (lone surrogates)
        conn = await asyncpg.connect(dsn)
        try:
            jobs = await _queries.insert_jobs(conn, [new])
            jobs += await _queries.insert_jobs(conn, [new, new])
            for job in jobs:
                stored = await _queries.get_job(conn, job.id)
                assert stored == job
                assert typed(stored.args) == typed(job.args) == typed(stored.meta)
            await conn.execute("DELETE FROM jobrunner_jobs WHERE queue = 'numbers'")
        finally:
            await conn.close()

    asyncio.run(check())


class ShufflingConn:
    """A pool whose insert_plain_jobs result comes back with its arrays in another order."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Any]:
        rows = await self.pool.fetch(query, *args, timeout=timeout)
        if query != _queries.INSERT_PLAIN_JOBS:
            return rows
        ids, states, scheduled_ats, inserted_at = rows[0]
        order = list(range(len(ids)))
        random.Random(7).shuffle(order)
        ids, states, scheduled_ats = ([values[i] for i in order] for values in rows[0][:3])
        return [(ids, states, scheduled_ats, inserted_at)]


async def test_insert_all_maps_its_jobs_back_by_id_in_any_order(
    client: jobrunner.Client,
) -> None:
    new_jobs = [plain.new({"i": i}, schedule_in=60 if i % 3 else None) for i in range(50)]
    jobs = await client.insert_all(new_jobs, conn=ShufflingConn(client.pool))
    assert [j.args for j in jobs] == [{"i": i} for i in range(50)]
    assert [j.id for j in jobs] == sorted(j.id for j in jobs)
    await assert_as_stored(client, jobs)


async def test_a_connection_with_its_own_json_codecs(client: jobrunner.Client, dsn: str) -> None:
    """The caller's connection may decode and encode json its own way: jobrunner sends and
    reads json as text."""
    conn = await asyncpg.connect(dsn)
    try:
        for name in ("json", "jsonb"):
            await conn.set_type_codec(
                name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )
        async with conn.transaction():
            single = await client.insert(plain.new({"a": 1}, meta={"m": [1]}), conn=conn)
            batch = await client.insert_all(
                [plain.new({"b": 2}, meta={"m": 2}), plain.new({"c": 3}, tags=["t"])], conn=conn
            )
        await assert_as_stored(client, [single, *batch])
    finally:
        await conn.close()


@pytest.mark.parametrize("steps", [0, 1, 2, 3])
async def test_a_cancelled_insert_all_inserts_all_or_nothing(
    client: jobrunner.Client, db: asyncpg.Connection, steps: int
) -> None:
    """Cancelled before, while or after its statement runs: the batch is atomic, the
    statement is not left running, and the pool goes on."""
    batch = [plain.new({"i": i}) for i in range(20_000)]
    task = asyncio.create_task(client.insert_all(batch))
    for _ in range(steps):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.1)
    assert await db.fetchval("SELECT count(*) FROM jobrunner_jobs") in (0, 20_000)
    running = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%jobrunner_insert%' "
        "AND state = 'active' AND pid <> pg_backend_pid() AND datname = current_database()"
    )
    assert running == 0
    jobs = await client.insert_all([plain.new({"after": 1}), plain.new({"after": 2})])
    await assert_as_stored(client, jobs)
