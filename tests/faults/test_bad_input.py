"""Bad input at every door: the Python API, the command line and database URLs.

Clear errors, nothing written half-way, SQL in values stays data, and the password of a
database URL never shows in a message, however the URL is mangled.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any
from urllib.parse import quote

import pytest
import structlog
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import jobrunner
from jobrunner import InvalidJob, JobRunnerError, NewJob, Unique
from jobrunner.cli import app
from jobrunner.core.config import Settings
from jobrunner.db import queries as _queries
from tests.faults._load import connect
from tests.helpers import NO_CONFIG, run_cli

pytestmark = pytest.mark.faults

EVIL = ["'; DROP TABLE jobrunner_jobs; --", 'x" OR "1"="1', "$1", "\\", "漢字", "🚀", "ß", "%s"]
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40) | st.sampled_from(EVIL)


# --- the Python API ------------------------------------------------------------------------

_ANY = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | _TEXT
    | st.lists(st.integers(), max_size=3)
    | st.tuples(st.integers())
    | st.dictionaries(_TEXT, st.integers(), max_size=3)
)


@settings(max_examples=300, deadline=None)
@given(
    worker=_ANY,
    queue=_ANY,
    priority=_ANY,
    max_attempts=_ANY,
    tags=st.lists(_ANY, max_size=3),
    args=_ANY,
    schedule_in=_ANY,
)
def test_new_job_accepts_only_valid_jobs_and_says_why_otherwise(
    worker: Any,
    queue: Any,
    priority: Any,
    max_attempts: Any,
    tags: list[Any],
    args: Any,
    schedule_in: Any,
) -> None:
    """Whatever a caller passes, NewJob either builds a job that satisfies every invariant
    the table has, or raises InvalidJob (never a TypeError or a half-built job)."""
    try:
        job = NewJob(
            worker=worker,
            args=args,
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            tags=tuple(tags),
            schedule_in=schedule_in,
        )
    except InvalidJob as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert isinstance(job.worker, str) and 1 <= len(job.worker) <= 255
    assert re.fullmatch(r"[A-Za-z0-9_.\-:]{1,128}", job.queue)
    assert type(job.priority) is int and 0 <= job.priority <= 9
    assert type(job.max_attempts) is int and 1 <= job.max_attempts <= 32767
    assert all(isinstance(t, str) and t for t in job.tags)
    assert isinstance(job.args, dict)
    assert job.schedule_in is None or (math.isfinite(job.schedule_in) and job.schedule_in >= 0)


_QUEUES = st.from_regex(r"\A[A-Za-z0-9_.\-:]{1,128}\Z")
_NAMES = st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=255,
) | st.sampled_from(EVIL)
_TAGS = st.lists(
    st.text(
        st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
        min_size=1,
        max_size=30,
    )
    | st.sampled_from(EVIL),
    max_size=4,
)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | _TEXT.filter(lambda s: "\x00" not in s),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(_TEXT.filter(lambda s: "\x00" not in s), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    queue=_QUEUES,
    worker=_NAMES,
    tags=_TAGS,
    args=st.dictionaries(_TEXT.filter(lambda s: "\x00" not in s), _JSON, max_size=5),
)
def test_queue_names_worker_names_tags_and_args_round_trip(
    faults_dsn: str, queue: str, worker: str, tags: list[str], args: dict[str, Any]
) -> None:
    """What goes in comes back out, byte for byte, and wakes the queue it names."""

    async def check() -> None:
        conn = await connect(faults_dsn)
        woken: list[str] = []
        await conn.add_listener("jobrunner_insert", lambda *a: woken.append(a[3]))
        try:
            [job] = await _queries.insert_jobs(
                conn, [NewJob(worker=worker, args=args, queue=queue, tags=tuple(tags))]
            )
            stored = await _queries.get_job(conn, job.id)
            assert stored is not None
            assert (stored.queue, stored.worker, stored.tags, stored.args) == (
                queue,
                worker,
                tuple(tags),
                args,
            )
            await conn.execute("DELETE FROM jobrunner_jobs WHERE id = $1", job.id)
            await conn.execute("SELECT 1")  # notifications arrive before this reply
            assert woken == [queue]
        finally:
            await conn.close()

    asyncio.run(check())


def _bad_jobs() -> st.SearchStrategy[Any]:
    return st.sampled_from(
        [
            ("the database refuses it", lambda: NewJob(worker="w", args={}, tags=["\udc80"])),
            ("the database refuses it", lambda: NewJob(worker="w", args={}, tags=["a", "b\udcff"])),
            ("not a job", lambda: {"worker": "w", "args": {}}),
            ("not a job", lambda: "w"),
        ]
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.integers(0, 30), where=st.floats(0, 1), bad=_bad_jobs())
def test_insert_all_with_one_bad_job_inserts_none(
    faults_dsn: str, size: int, where: float, bad: tuple[str, Any]
) -> None:
    """A batch with one bad job anywhere in it writes nothing: no row, no unique key taken,
    no notification sent; the same batch without it then goes in whole."""
    good = [
        NewJob(worker="w", args={"i": i}, queue="batch", unique=Unique(period=None))
        for i in range(size)
    ]
    batch: list[Any] = list(good)
    batch.insert(int(where * size), bad[1]())

    async def check() -> None:
        conn = await connect(faults_dsn)
        woken: list[str] = []
        await conn.add_listener("jobrunner_insert", lambda *a: woken.append(a[3]))
        settings_ = Settings(database_url=faults_dsn, pool_size=1)
        try:
            async with jobrunner.connect(settings=settings_) as client:
                with pytest.raises(InvalidJob):
                    await client.insert_all(batch)
                assert await conn.fetchval("SELECT count(*) FROM jobrunner_jobs") == 0
                await conn.execute("SELECT 1")
                assert woken == []
                inserted = await client.insert_all(good)
                assert [j.conflict for j in inserted] == [False] * size
        finally:
            await conn.execute("DELETE FROM jobrunner_jobs")
            await conn.close()

    asyncio.run(check())


# --- the command line ----------------------------------------------------------------------

APP = ["--app", "tests.apps.faults_workers"]


def jobrunner_cli(argv: list[str], dsn: str | None = None) -> Any:
    """`jobrunner ARGV` in this process (parsing and errors; signals need a subprocess).

    Commands configure structlog for their own output streams, which the runner closes
    afterwards: the suite's configuration is put back so that later tests can log."""
    env = {"JOBRUNNER_CONFIG": str(NO_CONFIG), "JOBRUNNER_DATABASE_URL": dsn}
    saved = structlog.get_config()
    try:
        return CliRunner().invoke(app, argv, env=env)
    finally:
        structlog.configure(**saved)


def _count_jobs(dsn: str) -> int:
    async def count() -> int:
        conn = await connect(dsn)
        try:
            n: int = await conn.fetchval("SELECT count(*) FROM jobrunner_jobs")
            return n
        finally:
            await conn.close()

    return asyncio.run(count())


@pytest.mark.parametrize(
    "argv",
    [
        ["enqueue", "faults.record", *APP, "--args", "[1, 2]"],
        ["enqueue", "faults.record", *APP, "--args", "{'single': 'quotes'}"],
        ["enqueue", "faults.record", *APP, "--args", '{"a": NaN}'],
        ["enqueue", "faults.record", *APP, "--args", '{"a": "\\u0000"}'],
        ["enqueue", "faults.record", *APP, "--meta", '"just a string"'],
        ["enqueue", "faults.record", *APP, "--queue", "q'; DROP TABLE jobrunner_jobs; --"],
        ["enqueue", "faults.record", *APP, "--queue", "ünïcode"],
        ["enqueue", "faults.record", *APP, "--queue", "q" * 129],
        ["enqueue", "faults.record", *APP, "--priority", "10"],
        ["enqueue", "faults.record", *APP, "--max-attempts", "99999999999"],
        ["enqueue", "faults.record", *APP, "--schedule-in", "1e300"],
        ["enqueue", "faults.record", *APP, "--tag", ""],
        ["enqueue", "x'); DROP TABLE jobrunner_jobs; --", *APP],
        ["enqueue", "faults.record", "--app", "no.such.module'"],
        ["start", "--queues", "emails:10,'; DROP TABLE jobrunner_jobs; --:1"],
        ["start", "--queues", "emails:1e9"],
        ["start", "--queues", "emails:-1"],
        ["start", "--queues", "漢字:1"],
        ["start", "--queues", ""],
        ["pause", 'q"; DROP TABLE jobrunner_jobs; --'],
        ["scale", "default", "0"],
        ["jobs", "show", "1; DROP TABLE jobrunner_jobs"],
        ["jobs", "list", "--state", "executing'--"],
    ],
    ids=lambda argv: " ".join(argv)[:60],
)
def test_bad_command_lines_get_one_clear_line_and_write_nothing(
    faults_dsn: str, argv: list[str]
) -> None:
    done = jobrunner_cli(argv, faults_dsn)
    assert done.exit_code == 2, (done.stdout, done.stderr, done.exception)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert _count_jobs(faults_dsn) == 0


@pytest.mark.parametrize(
    "args",
    [
        {"sql": "'); DROP TABLE jobrunner_jobs; --", "quote": 'it\'s "quoted"'},
        {"漢字": "ß🚀", "nested": [{"$1": None}], "big": 2**70},
        {"huge": "é" * 200_000},
    ],
)
def test_values_from_the_command_line_are_stored_as_data(
    faults_dsn: str, args: dict[str, Any]
) -> None:
    done = jobrunner_cli(
        [
            "enqueue",
            "faults.record",
            *APP,
            "--json",
            "--args",
            json.dumps(args, ensure_ascii=False),
        ],
        faults_dsn,
    )
    assert done.exit_code == 0, done.stderr
    job_id = json.loads(done.stdout)["id"]

    async def stored() -> Any:
        conn = await connect(faults_dsn)
        try:
            return await conn.fetchval(
                "DELETE FROM jobrunner_jobs WHERE id = $1 RETURNING args::text", job_id
            )
        finally:
            await conn.close()

    assert json.loads(asyncio.run(stored())) == args


# --- database URLs and their passwords ----------------------------------------------------

_SECRET = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=6, max_size=24)


def _fragments(password: str) -> set[str]:
    """The pieces of a password a URL parser may split off and echo (at / ? # @ :)."""
    return {p for p in re.split(r"[/?#@:]", password) if len(p) >= 4} | {password}


@settings(max_examples=150, deadline=None)
@given(
    password=_SECRET,
    encoded=st.booleans(),
    rest=st.sampled_from(
        [
            "127.0.0.1:1/app",
            "127.0.0.1:99999/app",
            "127.0.0.1:1/app?sslmode=x",
            "127.0.0.1:x/app",
            "[::1]:1/app",
            "/app?host=/nonexistent",
        ]
    ),
)
def test_no_error_message_shows_the_password(password: str, encoded: bool, rest: str) -> None:
    """A password written raw (with @ / ? # : in it, as people paste them) or encoded never
    shows in the error a client gets, nor any piece of it that a parser split off."""
    # A raw @ makes the driver look the rest up as a host name: no lookups leave this machine.
    assume(encoded or "@" not in password)
    secret = quote(password, safe="") if encoded else password
    url = f"postgresql://127.0.0.1:{secret}@{rest}"
    shown = {
        p
        for p in _fragments(password) | _fragments(secret)
        if p not in f"postgresql://127.0.0.1:***@{rest}"
    }
    assume(shown)

    async def attempt() -> str:
        try:
            async with jobrunner.connect(url):
                pass
        except JobRunnerError as exc:
            return str(exc)
        raise AssertionError("connected to a database that does not exist")

    message = asyncio.run(attempt())
    leaked = [p for p in shown if p in message]
    assert not leaked, f"{leaked} in {message!r}"


@pytest.mark.parametrize(
    "command", [["migrate"], ["start", "--queues", "default:1"], ["status"], ["drain"]]
)
@pytest.mark.parametrize("password", ["s3cret", "pa/ss@w0rd#1", "p@ss:w0rd"])
def test_the_command_line_never_prints_the_password(command: list[str], password: str) -> None:
    done = jobrunner_cli([*command, "--dsn", f"postgresql://user:{password}@127.0.0.1:1/x"])
    output = done.stdout + done.stderr
    assert done.exit_code in (1, 2), output
    pieces = [p for p in re.split(r"[/@#:]", password) if p]
    assert password not in output and "w0rd" not in output, output
    assert not [p for p in pieces if f"'{p}'" in output], output
    assert "***" in output and "Traceback" not in output


@pytest.mark.parametrize("command", [["migrate"], ["start", "--queues", "default:1"]])
def test_a_daemon_or_migrate_on_an_unreachable_database_never_prints_the_password(
    command: list[str],
) -> None:
    """As a user runs them: a process, its whole output, logs included."""
    done = run_cli(*command, "--dsn", "postgresql://user:s3cret@127.0.0.1:1/x", timeout_s=60)
    assert done.returncode == 1
    assert "s3cret" not in done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: cannot connect to 'postgresql://user:***@127.0.0.1:1/x': "
        "[Errno 111] Connect call failed ('127.0.0.1', 1)"
    ]
