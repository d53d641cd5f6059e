"""Sync workers and typed args without a database: definition errors, the thread pool,
cooperative cancellation, typed args at new() and at run time, perform_job."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

import jobrunner
from jobrunner import Cancel, InvalidJob, Job, JobRunnerError, JobState, Snooze, worker
from jobrunner.core.threads import ThreadPool
from jobrunner.engine.executor import JobTimeout, execute
from jobrunner.testing import build_job, perform_job


class Size(enum.Enum):
    SMALL = "s"
    LARGE = "l"


@dataclass
class Box:
    w: int
    h: int = 1


@dataclass
class Resize:
    image_id: int
    width: float = 100
    size: Size = Size.SMALL
    mode: Literal["fit", "fill"] = "fit"
    tags: list[str] = field(default_factory=list)
    box: Box | None = None
    note: str | None = None


@worker(queue="images", name="sync.resize", args=Resize)
def resize(job: Job, args: Resize) -> Any:
    return (threading.current_thread().name, args)


@worker(name="sync.outcomes")
def outcomes(job: Job) -> Any:
    kind = job.args.get("do")
    if kind == "fail":
        raise ValueError("boom")
    if kind == "snooze":
        return Snooze(5)
    if kind == "cancel":
        return Cancel("no")
    return None


# --- definition ----------------------------------------------------------------------------


def test_generators_lambdas_and_mixed_classes_fail_at_definition() -> None:
    with pytest.raises(TypeError, match=r"is a generator \('yield' in its body\)"):

        @worker(name="bad.gen")
        def gen(job: Job) -> Any:
            yield 1

    with pytest.raises(TypeError, match="is a generator"):

        @worker(name="bad.agen")
        async def agen(job: Job) -> Any:
            yield 1

    async def later(job: Job) -> None: ...

    with pytest.raises(TypeError, match="a lambda cannot be a worker"):
        worker(name="bad.lambda")(lambda job: later(job))

    with pytest.raises(TypeError, match="mixes 'def perform' with 'async def backoff'"):

        @worker(name="bad.mixed")
        class Mixed:
            def perform(self, job: Job) -> None: ...

            async def backoff(self, job: Job) -> float:
                return 1.0

    with pytest.raises(TypeError, match="mixes 'async def perform' with 'async def timeout'"):

        @worker(name="bad.mixed2")
        class Mixed2:
            async def perform(self, job: Job) -> None: ...

            async def timeout(self, job: Job) -> float:
                return 1.0

    with pytest.raises(TypeError, match="needs a 'perform\\(self, job\\)' method"):

        @worker(name="bad.noperform")
        class NoPerform:
            pass


def test_typed_workers_must_take_job_and_args() -> None:
    with pytest.raises(TypeError, match=r"must take \(job, args\) as its arguments"):

        @worker(name="bad.typed", args=Resize)
        def one(job: Job) -> None: ...

    with pytest.raises(TypeError, match="args must be a dataclass or a pydantic model"):

        @worker(name="bad.argtype", args=dict)
        def two(job: Job, args: Any) -> None: ...


# --- typed args at new() -------------------------------------------------------------------


def test_new_validates_typed_args_and_stores_json() -> None:
    assert resize.new({"image_id": 1}).args == {
        "image_id": 1,
        "width": 100,
        "size": "s",
        "mode": "fit",
        "tags": [],
        "box": None,
        "note": None,
    }
    given = Resize(2, width=1.5, size=Size.LARGE, tags=["a"], box=Box(3))
    stored = resize.new(given).args
    assert stored["size"] == "l" and stored["box"] == {"w": 3, "h": 1}
    assert resize.new(stored).args == stored


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({}, "missing field 'image_id'"),
        ({"image_id": 1, "height": 2}, "unknown field 'height'"),
        ({"image_id": "1"}, "field 'image_id' must be int, got str '1'"),
        ({"image_id": True}, "field 'image_id' must be int, got bool True"),
        ({"image_id": 1, "width": "wide"}, "field 'width' must be float"),
        ({"image_id": 1, "size": "m"}, "field 'size' must be Size"),
        ({"image_id": 1, "mode": "crop"}, "field 'mode' must be one of ('fit', 'fill')"),
        ({"image_id": 1, "tags": "a"}, "field 'tags' must be list[str]"),
        ({"image_id": 1, "box": {"h": 2}}, "missing field 'box.w'"),
        ({"image_id": 1, "box": {"w": "x"}}, "field 'box.w' must be int, got str 'x'"),
        (Resize("x"), "field 'image_id' must be int"),  # type: ignore[arg-type]
        ([1], "give a Resize or a dict, got list"),
    ],
)
def test_bad_typed_args_fail_at_new_naming_the_field(args: Any, message: str) -> None:
    with pytest.raises(InvalidJob) as caught:
        resize.new(args)
    assert str(caught.value).startswith("invalid args for worker 'sync.resize': ")
    assert message in str(caught.value)


def test_pydantic_models_type_args_when_installed() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Mail(pydantic.BaseModel):  # type: ignore[misc, name-defined]
        to: str
        retries: int = 0

    @worker(name="sync.mail", args=Mail)
    def mail(job: Job, args: Mail) -> str:
        return f"{args.to}/{args.retries}"

    assert mail.new({"to": "ann"}).args == {"to": "ann", "retries": 0}
    assert mail.new(Mail(to="bob", retries=2)).args == {"to": "bob", "retries": 2}
    with pytest.raises(InvalidJob, match=r"invalid args for worker 'sync\.mail': field 'retries'"):
        mail.new({"to": "ann", "retries": "many"})
    with pytest.raises(InvalidJob, match="field 'to'"):
        mail.new({})


# --- running -------------------------------------------------------------------------------


async def test_perform_job_runs_a_sync_worker_in_a_thread_with_typed_args() -> None:
    name, args = await perform_job(resize, {"image_id": 7, "box": {"w": 2}})
    assert name.startswith("jobrunner-sync-") and name != threading.current_thread().name
    assert args == Resize(7, box=Box(2))


async def test_sync_outcomes_are_the_async_ones() -> None:
    assert await perform_job(outcomes, {}) is None
    assert await perform_job(outcomes, {"do": "snooze"}) == Snooze(5)
    assert await perform_job(outcomes, {"do": "cancel"}) == Cancel("no")
    with pytest.raises(ValueError, match="boom"):
        await perform_job(outcomes, {"do": "fail"})


async def test_stored_args_that_no_longer_fit_fail_the_attempt() -> None:
    job = dataclasses.replace(build_job(resize, {"image_id": 1}), args={"image_id": "old"})
    result = await execute(job, jobrunner.Client(settings=jobrunner.Settings()), worker=resize)
    assert result.outcome == "failure" and result.ack.state == "retryable"
    assert "InvalidJob: invalid args for worker 'sync.resize': field 'image_id'" in str(
        result.ack.error
    )


async def test_a_def_returning_a_coroutine_fails_the_attempt() -> None:
    async def inner() -> None: ...

    @worker(name="sync.returns_coroutine")
    def sneaky(job: Job) -> Any:
        return inner()

    with pytest.raises(TypeError, match="plain 'def' but returned an awaitable"):
        await perform_job(sneaky, {})


async def test_a_timed_out_thread_sees_cancelled_and_its_result_is_dropped() -> None:
    stopped = threading.Event()

    @worker(name="sync.cooperative", timeout=0.1)
    def cooperative(job: Job) -> str:
        while not job.cancelled():
            time.sleep(0.005)
        stopped.set()
        return "late"

    with pytest.raises(JobTimeout):
        await perform_job(cooperative, {})
    assert await asyncio.to_thread(stopped.wait, 10)


def test_cancelled_is_false_outside_a_sync_attempt() -> None:
    job = Job(id=1, state=JobState.EXECUTING, queue="q", worker="w", args={})
    assert job.cancelled() is False


async def test_current_client_in_a_thread_is_a_thread_client() -> None:
    @worker(name="sync.client")
    def which(job: Job) -> Any:
        return jobrunner.current_client(), jobrunner.ThreadClient.current()

    client = jobrunner.Client(settings=jobrunner.Settings())
    seen, typed = await perform_job(which, {}, client=client)
    assert isinstance(seen, jobrunner.ThreadClient) and seen.client is client
    assert isinstance(typed, jobrunner.ThreadClient)

    @worker(name="sync.async_client")
    async def async_which(job: Job) -> Any:
        with pytest.raises(JobRunnerError, match="only available inside a sync job's thread"):
            jobrunner.ThreadClient.current()
        return jobrunner.current_client()

    assert await perform_job(async_which, {}, client=client) is client


# --- the pool ------------------------------------------------------------------------------


def test_the_pool_bounds_its_threads_and_queues_the_rest() -> None:
    pool = ThreadPool(2, name="test-pool")
    gate = threading.Event()
    running: list[int] = []
    lock = threading.Lock()
    most = 0

    def work(i: int) -> int:
        nonlocal most
        with lock:
            running.append(i)
            most = max(most, len(running))
        gate.wait(10)
        with lock:
            running.remove(i)
        return i

    futures = [pool.submit(work, i) for i in range(5)]
    deadline = time.monotonic() + 10
    while len(running) < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    gate.set()
    assert [f.result(10) for f in futures] == [0, 1, 2, 3, 4]
    assert most == 2
    pool.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(work, 9)


def test_threads_setting_must_be_positive() -> None:
    with pytest.raises(jobrunner.ConfigError, match="threads must be an integer >= 1, got 0"):
        jobrunner.Settings(threads=0)
    with pytest.raises(jobrunner.ConfigError, match="threads must be an integer >= 1, got 0"):
        ThreadPool(0)


def test_a_crontab_entry_with_args_that_do_not_fit_is_refused_at_start() -> None:
    from jobrunner.core.config import CronEntry
    from jobrunner.plugins.cron import parse

    with pytest.raises(jobrunner.ConfigError) as caught:
        parse(CronEntry("* * * * *", "sync.resize", args={"image_id": "x"}))
    assert str(caught.value) == (
        "crontab entry 'sync.resize@* * * * *': invalid args for worker 'sync.resize': "
        "field 'image_id' must be int, got str 'x'"
    )


async def test_a_sync_jobs_timeout_starts_when_a_thread_takes_it() -> None:
    """With every thread busy, a job waits for one; that wait is not part of its timeout."""
    from jobrunner.core import threads as _threads

    started = threading.Event()

    @worker(name="sync.hog", timeout=10)
    def hog(job: Job) -> str:
        started.set()
        time.sleep(0.5)  # the job's own work, holding the only thread
        return "hog"

    @worker(name="sync.quick", timeout=0.2)
    def quick(job: Job) -> str:
        return "quick"

    async def scenario() -> None:  # in a task of its own: the pool is set for it alone
        _threads.use(ThreadPool(1, name="test-one"))
        first = asyncio.create_task(perform_job(hog, {}))
        assert await asyncio.to_thread(started.wait, 10)
        assert await perform_job(quick, {}) == "quick"  # waited ~0.5 s for the thread
        assert await first == "hog"

    await asyncio.create_task(scenario())


async def test_a_thread_client_refuses_the_event_loops_own_thread() -> None:
    client = jobrunner.Client(settings=jobrunner.Settings())
    view = jobrunner.ThreadClient(client, asyncio.get_running_loop())
    with pytest.raises(JobRunnerError, match="for a sync job's thread, not the event loop"):
        view.get_job(1)  # waiting here for the loop would hang it
