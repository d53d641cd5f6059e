"""@worker on functions and classes, options, the registry, and insertable jobs."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from jobrunner import InvalidJob, Job, JobState, NewJob, Unique, UnknownWorker, Worker, worker
from jobrunner.core.worker import as_worker, default_backoff, lookup, registered


def _job(**fields: object) -> Job:
    values: dict[str, object] = {
        "id": 1,
        "state": JobState.EXECUTING,
        "queue": "default",
        "worker": "w",
        "args": {},
    }
    values.update(fields)
    return Job(**values)  # type: ignore[arg-type]


async def test_function_worker_defaults_and_registry() -> None:
    @worker()
    async def plain(job: Job) -> None:
        return None

    assert isinstance(plain, Worker)
    assert plain.name == f"{__name__}.test_function_worker_defaults_and_registry.<locals>.plain"
    assert (plain.queue, plain.max_attempts, plain.priority, plain.tags) == ("default", 20, 0, ())
    assert plain.timeout is None and plain.unique is None
    assert lookup(plain.name) is plain
    assert registered()[plain.name] is plain
    assert as_worker(plain.name) is plain and as_worker(plain) is plain
    assert await plain.perform(_job()) is None


async def test_function_worker_options() -> None:
    unique = Unique(period=300, keys=["user_id"])

    @worker(
        queue="emails",
        max_attempts=5,
        priority=1,
        tags=["mail", "eu"],
        timeout=30,
        unique=unique,
        name="mail.send",
    )
    async def send(job: Job) -> str:
        return f"sent {job.args['to']}"

    assert send.name == "mail.send" and lookup("mail.send") is send
    assert (send.queue, send.max_attempts, send.priority) == ("emails", 5, 1)
    assert send.tags == ("mail", "eu") and send.timeout == 30 and send.unique is unique
    assert send.timeout_for(_job()) == 30
    assert await send.perform(_job(args={"to": "ann"})) == "sent ann"
    assert 17 <= send.backoff(_job(attempt=1)) <= 17 * 1.1


async def test_class_worker_with_backoff_and_timeout() -> None:
    @worker(queue="media", name="media.video", max_attempts=3)
    class ProcessVideo:
        async def perform(self, job: Job) -> str:
            return f"video {job.args['id']}"

        def backoff(self, job: Job) -> float:
            return 2.0**job.attempt

        def timeout(self, job: Job) -> float:
            return 10.0 * job.args["id"]

    assert isinstance(ProcessVideo, type)
    registered_worker = as_worker(ProcessVideo)
    assert registered_worker is lookup("media.video")
    assert registered_worker.queue == "media" and registered_worker.max_attempts == 3
    assert await registered_worker.perform(_job(args={"id": 4})) == "video 4"
    assert registered_worker.backoff(_job(attempt=3)) == 8.0
    assert registered_worker.timeout_for(_job(args={"id": 2})) == 20.0
    new = ProcessVideo.new({"id": 1})  # type: ignore[attr-defined]
    assert new.worker == "media.video" and new.queue == "media" and new.max_attempts == 3


def test_class_worker_without_optional_methods_uses_defaults() -> None:
    @worker(timeout=5)
    class Minimal:
        async def perform(self, job: Job) -> None: ...

    found = as_worker(Minimal)
    assert found.timeout_for(_job()) == 5
    assert 15 + 2 <= found.backoff(_job(attempt=1)) <= (15 + 2) * 1.1


def test_a_plain_def_is_a_sync_worker() -> None:
    @worker()
    def sync(job: Job) -> None: ...

    @worker()
    class SyncClass:
        def perform(self, job: Job) -> None: ...

    @worker()
    async def not_sync(job: Job) -> None: ...

    assert sync.sync and as_worker(SyncClass).sync and not not_sync.sync


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"priority": -1}, "priority must be an integer from 0 to 9, got -1"),
        ({"priority": 10}, "priority must be an integer from 0 to 9, got 10"),
        ({"priority": 1.5}, "priority must be an integer from 0 to 9, got 1.5"),
        ({"priority": True}, "priority must be an integer from 0 to 9, got True"),
        ({"max_attempts": 0}, "max_attempts must be an integer >= 1, got 0"),
        ({"queue": ""}, "queue name must be"),
        ({"queue": "bad queue"}, "queue name must be"),
        ({"queue": "x" * 129}, "queue name must be"),
        ({"tags": ["ok", ""]}, "tags must be non-empty strings"),
        ({"tags": "mail"}, "tags must be a list of strings, got 'mail'"),
        ({"timeout": 0}, "timeout must be seconds > 0 or None, got 0"),
        ({"timeout": float("nan")}, "timeout must be seconds > 0 or None, got nan"),
        ({"unique": {"period": 60}}, "unique must be a jobrunner.Unique"),
    ],
)
def test_bad_worker_options_fail_at_definition(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidJob, match=_re(message)):
        worker(**options)  # type: ignore[arg-type]


def test_unknown_worker_option_is_a_clear_type_error() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'retries'"):
        worker(retries=3)  # type: ignore[call-arg]


def test_new_overrides_worker_options() -> None:
    @worker(queue="q1", priority=3, max_attempts=7, tags=["a"], unique=Unique(period=10))
    async def w(job: Job) -> None: ...

    at = datetime(2030, 1, 1, tzinfo=UTC)
    job = w.new(
        {"x": 1},
        queue="q2",
        priority=0,
        max_attempts=1,
        tags=["b", "c"],
        meta={"m": [1, 2]},
        scheduled_at=at,
        unique=False,
    )
    assert job == NewJob(
        worker=w.name,
        args={"x": 1},
        queue="q2",
        priority=0,
        max_attempts=1,
        tags=("b", "c"),
        meta={"m": [1, 2]},
        scheduled_at=at,
        unique=None,
    )
    default = w.new()
    assert (default.args, default.queue, default.priority, default.max_attempts) == ({}, "q1", 3, 7)
    assert default.tags == ("a",) and default.unique == Unique(period=10)
    other = Unique(period=None)
    assert w.new({}, unique=other).unique is other


def test_new_rejects_unknown_options() -> None:
    @worker()
    async def w(job: Job) -> None: ...

    with pytest.raises(TypeError, match="unexpected keyword argument 'delay'"):
        w.new({}, delay=5)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([1, 2], "args must be a JSON object (a dict), got list"),
        ("{}", "args must be a JSON object (a dict), got str"),
        (None.__class__, "args must be a JSON object (a dict), got type"),
        ({"n": float("nan")}, "args must be JSON-serialisable"),
        ({"n": float("inf")}, "args must be JSON-serialisable"),
        ({"when": datetime(2020, 1, 1)}, "args must be JSON-serialisable"),
        ({"s": {1, 2}}, "args must be JSON-serialisable"),
        ({1: "int key"}, "args must survive a JSON round trip"),
        ({"t": (1, 2)}, "args must survive a JSON round trip"),
        ({"nul": "a\x00b"}, "args must hold valid text: no NUL characters"),
        ({"a\x00": 1}, "args must hold valid text: no NUL characters"),
        ({"x": ["\ud800"]}, "args must hold valid text"),
        ({"\udfff": 1}, "args must hold valid text"),
    ],
)
def test_args_must_be_a_json_object(args: object, message: str) -> None:
    @worker()
    async def w(job: Job) -> None: ...

    with pytest.raises(InvalidJob, match=_re(message)):
        w.new(args)  # type: ignore[arg-type]


def test_meta_must_be_a_json_object() -> None:
    @worker()
    async def w(job: Job) -> None: ...

    with pytest.raises(InvalidJob, match=_re("meta must be a JSON object (a dict), got list")):
        w.new({}, meta=[])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"schedule_in": -1},
            "schedule_in must be seconds from 0 to 3153600000 (100 years), got -1",
        ),
        (
            {"schedule_in": math.inf},
            "schedule_in must be seconds from 0 to 3153600000 (100 years), got inf",
        ),
        (
            {"schedule_in": math.nan},
            "schedule_in must be seconds from 0 to 3153600000 (100 years), got nan",
        ),
        (
            {"schedule_in": 9.2e12},
            "schedule_in must be seconds from 0 to 3153600000 (100 years), got 9200000000000.0",
        ),
        (
            {"schedule_in": "60"},
            "schedule_in must be seconds from 0 to 3153600000 (100 years), got '60'",
        ),
        ({"scheduled_at": datetime(2030, 1, 1)}, "scheduled_at must be a timezone-aware"),
        ({"scheduled_at": datetime.max.replace(tzinfo=UTC)}, "from year 1 to 9998"),
        ({"scheduled_at": "2030-01-01"}, "scheduled_at must be a timezone-aware"),
        (
            {"schedule_in": 1, "scheduled_at": datetime.now(UTC)},
            "give scheduled_at or schedule_in, not both",
        ),
    ],
)
def test_bad_schedule(options: dict[str, object], message: str) -> None:
    @worker()
    async def w(job: Job) -> None: ...

    with pytest.raises(InvalidJob, match=_re(message)):
        w.new({}, **options)  # type: ignore[arg-type]


def test_durations_may_be_timedeltas() -> None:
    @worker()
    async def w(job: Job) -> None: ...

    assert w.new({}, schedule_in=timedelta(minutes=2)).schedule_in == 120.0
    assert Unique(period=timedelta(hours=1)).period == 3600.0
    with pytest.raises(InvalidJob, match=_re("schedule_in must be seconds from 0 to")):
        w.new({}, schedule_in=timedelta(seconds=-1))


def test_new_job_run_at() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    at = now + timedelta(hours=1)
    assert NewJob(worker="w", args={}).run_at(now) is None
    assert NewJob(worker="w", args={}, schedule_in=0).run_at(now) is None
    assert NewJob(worker="w", args={}, schedule_in=90).run_at(now) == now + timedelta(seconds=90)
    assert NewJob(worker="w", args={}, scheduled_at=at).run_at(now) == at


def test_lookup_of_unknown_worker() -> None:
    message = "unknown worker 'nope.never'; is its module in --app"
    with pytest.raises(UnknownWorker, match=_re(message)):
        lookup("nope.never")
    with pytest.raises(UnknownWorker, match="is not a jobrunner worker"):
        as_worker(int)


def test_default_backoff_is_obans() -> None:
    for attempt in (1, 2, 5, 10):
        base = 15 + 2**attempt
        for _ in range(50):
            assert base <= default_backoff(attempt) <= base * 1.1
    assert default_backoff(10_000) < math.inf


class TestUnique:
    def test_defaults_are_obans(self) -> None:
        unique = Unique()
        assert unique.period == 60
        assert unique.fields == ("worker", "queue", "args")
        assert unique.keys is None
        assert unique.states == (
            JobState.AVAILABLE,
            JobState.SCHEDULED,
            JobState.EXECUTING,
            JobState.RETRYABLE,
            JobState.COMPLETED,
        )

    @pytest.mark.parametrize(
        ("group", "states"),
        [
            ("all", tuple(JobState)),
            ("incomplete", ("available", "scheduled", "executing", "retryable")),
            ("scheduled", ("scheduled",)),
            ("successful", ("available", "scheduled", "executing", "retryable", "completed")),
        ],
    )
    def test_named_state_groups(self, group: str, states: tuple[str, ...]) -> None:
        assert Unique(states=group).states == tuple(JobState(s) for s in states)

    def test_states_accept_strings_and_enums(self) -> None:
        unique = Unique(states=["available", JobState.SCHEDULED])
        assert unique.states == (JobState.AVAILABLE, JobState.SCHEDULED)

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"period": 0}, "unique period must be > 0 seconds or None, got 0"),
            ({"period": -5}, "unique period must be > 0 seconds or None, got -5"),
            ({"period": "60"}, "unique period must be > 0 seconds or None, got '60'"),
            ({"period": math.inf}, "unique period must be > 0 seconds or None, got inf"),
            ({"fields": ["args", "colour"]}, "unique fields must be among"),
            ({"fields": []}, "unique fields must be among"),
            ({"states": ["available", "done"]}, "unknown job state 'done'"),
            ({"states": "nearly"}, "unknown job state 'nearly'"),
            ({"states": []}, "unique states must not be empty"),
            ({"keys": "user_id"}, "unique keys must be a list of strings, got 'user_id'"),
            ({"keys": []}, "unique keys must not be empty"),
        ],
    )
    def test_bad_options(self, options: dict[str, object], message: str) -> None:
        with pytest.raises(InvalidJob, match=_re(message)):
            Unique(**options)  # type: ignore[arg-type]

    def test_fingerprint_picks_fields_and_keys(self) -> None:
        by_user = Unique(keys=["user_id"])
        a = by_user.fingerprint("w", "q", {"user_id": 1, "extra": 1}, {})
        b = by_user.fingerprint("w", "q", {"extra": 2, "user_id": 1}, {"m": 1})
        c = by_user.fingerprint("w", "q", {"user_id": 2}, {})
        assert a == b and a != c
        assert by_user.fingerprint("w", "other", {"user_id": 1}, {}) != a
        args_only = Unique(fields=["args"])
        assert args_only.fingerprint("w1", "q1", {"x": 1}, {}) == args_only.fingerprint(
            "w2", "q2", {"x": 1}, {}
        )
        with_meta = Unique(fields=["worker", "meta"], keys=["tenant"])
        assert with_meta.fingerprint(
            "w", "q", {"a": 1}, {"tenant": "t", "x": 1}
        ) == with_meta.fingerprint("w", "q", {"a": 2}, {"tenant": "t", "x": 2})

    def test_keys_without_args_or_meta_compare_args(self) -> None:
        """fields=[queue, worker] with keys=[user_id]: one job per user, as Oban users write it."""
        unique = Unique(fields=["queue", "worker"], keys=["user_id"])
        one = unique.fingerprint("w", "q", {"user_id": 1, "n": 1}, {})
        assert one == unique.fingerprint("w", "q", {"user_id": 1, "n": 2}, {})
        assert one != unique.fingerprint("w", "q", {"user_id": 2, "n": 1}, {})


def _re(text: str) -> str:
    import re

    return re.escape(text)
