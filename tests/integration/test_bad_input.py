"""Bad input through the Python API: clear exceptions, no SQL injection, nothing half-written,
no password in any message; and args of any JSON shape round-trip exactly."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jobrunner
from jobrunner import ConfigError, DatabaseUnavailable, InvalidJob, Job, NewJob, worker
from jobrunner.db import queries as _queries
from tests.conftest import with_database


@worker(name="bad_input.task")
async def task(job: Job) -> None: ...


async def count(db: asyncpg.Connection) -> int:
    n: int = await db.fetchval("SELECT count(*) FROM jobrunner_jobs")
    return n


async def test_unreachable_database(db: asyncpg.Connection) -> None:
    with pytest.raises(DatabaseUnavailable) as caught:
        async with jobrunner.connect("postgresql://app:s3cret-pw@127.0.0.1:1/app"):
            pass
    message = str(caught.value)
    assert message.startswith("cannot connect to 'postgresql://app:***@127.0.0.1:1/app': ")
    assert "s3cret-pw" not in message and "\n" not in message


async def test_database_that_does_not_exist(dsn: str) -> None:
    missing = with_database(dsn, "jobrunner_no_such_database")
    with pytest.raises(
        DatabaseUnavailable, match='database "jobrunner_no_such_database" does not exist'
    ):
        async with jobrunner.connect(missing):
            pass


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("not a url", "invalid DSN"),
        ("mysql://root:pw@localhost/app", "invalid DSN"),
        ("postgresql://root:pw@localhost:99999/app", "out of range 0-65535"),
        ("postgresql://root:pw@127.0.0.1:99999/app", "out of range 0-65535"),
        ("postgresql://root:pw@localhost/app?sslmode=sometimes", "sslmode"),
    ],
)
async def test_malformed_database_url(url: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        async with jobrunner.connect(url):
            pass
    message = str(caught.value)
    assert message.startswith("invalid database url '") and reason in message
    assert "give one like 'postgresql://user@localhost:5432/dbname'" in message
    assert ":pw@" not in message


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: task.new([1]), "args must be a JSON object (a dict), got list"),
        (lambda: task.new("{}"), "args must be a JSON object (a dict), got str"),
        (lambda: task.new({"n": float("nan")}), "args must be JSON-serialisable"),
        (lambda: task.new({}, priority=-1), "priority must be an integer from 0 to 9, got -1"),
        (lambda: task.new({}, max_attempts=0), "max_attempts must be an integer >= 1, got 0"),
        (lambda: task.new({}, queue="x'; DROP TABLE jobrunner_jobs; --"), "queue name must be"),
        (lambda: task.new({}, tags=["a\x00b"]), "tags must be non-empty strings"),
        (lambda: NewJob(worker="w" * 256, args={}), "worker name must be a string of 1-255"),
        (lambda: NewJob(worker="", args={}), "worker name must be a string of 1-255"),
        (lambda: task.new({}, colour="red"), "unexpected keyword argument 'colour'"),
    ],
)
async def test_bad_jobs_fail_before_anything_is_written(
    client: jobrunner.Client, db: asyncpg.Connection, build: Any, message: str
) -> None:
    with pytest.raises((InvalidJob, TypeError), match=re.escape(message)):
        await client.insert_all([task.new({"ok": 1}), build()])
    assert await count(db) == 0


async def test_a_job_the_database_refuses_fails_the_whole_batch(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    batch = [task.new({"i": 1}), task.new({"i": 2}, tags=["\udc80"]), task.new({"i": 3})]
    refused = r"the database refused the job: invalid input"
    with pytest.raises(InvalidJob, match=refused):
        await client.insert_all(batch)
    assert await count(db) == 0
    assert len(await client.insert_all([task.new({"i": 1})])) == 1


async def test_sql_in_values_is_data(client: jobrunner.Client, db: asyncpg.Connection) -> None:
    evil = "'); DROP TABLE jobrunner_jobs; --"
    job = await client.insert(
        NewJob(worker=f"w{evil}", args={evil: evil}, tags=(evil,), meta={"q": evil})
    )
    assert (job.worker, job.args, job.tags, job.meta) == (
        f"w{evil}",
        {evil: evil},
        (evil,),
        {"q": evil},
    )
    assert await client.get_job(job.id) == job
    assert await count(db) == 1


async def test_huge_and_unicode_values_round_trip(client: jobrunner.Client) -> None:
    big = "ß漢🚀" * 400_000  # ~4 MB of UTF-8
    job = await client.insert(
        NewJob(
            worker="unicode.wörker.漢",
            args={"big": big, "ключ": [1]},
            queue="unicode_q",
            tags=("标签",),
        )
    )
    stored = await client.get_job(job.id)
    assert stored is not None and stored.args["big"] == big and stored.args["ключ"] == [1]
    assert stored.worker == "unicode.wörker.漢" and stored.tags == ("标签",)


async def test_non_ascii_queue_names_are_refused(client: jobrunner.Client) -> None:
    with pytest.raises(
        InvalidJob,
        match=re.escape("queue name must be 1-128 letters, digits or '_.-:', got 'ünïcode'"),
    ):
        task.new({}, queue="ünïcode")


# Any character PostgreSQL stores: not NUL, not a lone surrogate (both refused up front).
_CHARS = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    # Past 1e15 Python writes floats with an exponent, which jsonb turns into an integer.
    | st.floats(min_value=-1e15, max_value=1e15, allow_nan=False)
    | st.text(_CHARS, max_size=20)
)
_KEYS = st.text(_CHARS, max_size=10)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=20,
)
_ARGS = st.dictionaries(_KEYS, _JSON, max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(args=_ARGS, meta=_ARGS)
def test_any_json_object_round_trips_exactly(
    dsn: str, args: dict[str, Any], meta: dict[str, Any]
) -> None:
    async def check() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            [job] = await _queries.insert_jobs(
                conn, [NewJob(worker="prop", args=args, meta=meta, queue="property")]
            )
            stored = await _queries.get_job(conn, job.id)
            assert stored is not None
            assert job.args == stored.args == args and job.meta == stored.meta == meta
            assert _types(stored.args) == _types(args)
            await conn.execute("DELETE FROM jobrunner_jobs WHERE id = $1", job.id)
        finally:
            await conn.close()

    asyncio.run(check())


def _types(value: Any) -> Any:
    """The shape of a JSON value with its types, so 1 and 1.0 and True differ."""
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value).__name__


@settings(max_examples=60, deadline=None)
@given(
    args=_ARGS, bad=st.sampled_from(["\x00", "\ud800", "a\udfffb", "x\x00y"]), as_key=st.booleans()
)
def test_text_postgresql_refuses_is_refused_up_front(
    args: dict[str, Any], bad: str, as_key: bool
) -> None:
    poisoned = {**args, bad: 1} if as_key else {**args, "nested": [{"v": bad}]}
    with pytest.raises(InvalidJob, match="args must hold valid text"):
        task.new(poisoned)
