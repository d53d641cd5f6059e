"""Sync workers: the bounded thread pool they run in, and their cooperative stop flag."""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import Any

from jobrunner.core.errors import ConfigError
from jobrunner.core.job import Job, _stop_flag

DEFAULT_THREADS = 10

# The pool the current job's sync worker runs in (set per job task by the producer); none
# set means the process-wide default pool (perform_job, inline mode, drain).
_pool: contextvars.ContextVar[ThreadPool | None] = contextvars.ContextVar(
    "jobrunner_threads", default=None
)
# Inside a sync worker's thread: the event loop that runs its job.
_loop: contextvars.ContextVar[asyncio.AbstractEventLoop | None] = contextvars.ContextVar(
    "jobrunner_loop", default=None
)

# The current attempt's timeout and its length: a sync job waiting for a free thread has
# its timeout held until the thread starts it.
deadline: contextvars.ContextVar[tuple[asyncio.Timeout, float] | None] = contextvars.ContextVar(
    "jobrunner_deadline", default=None
)

_Work = tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]


class ThreadPool:
    """At most `size` daemon threads, started as work arrives, running sync workers.

    Not `concurrent.futures.ThreadPoolExecutor`: its threads are joined at interpreter exit,
    so one sync job that never returns would keep a stopped daemon from exiting. A job
    still running past the shutdown grace is already back in the queue; its thread dies
    with the process.
    """

    def __init__(self, size: int = DEFAULT_THREADS, *, name: str = "jobrunner-sync") -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ConfigError(f"threads must be an integer >= 1, got {size!r}")
        self.size = size
        self._name = name
        self._work: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False

    def saturated(self) -> bool:
        """True when work submitted now would wait for a thread to come free."""
        with self._lock:
            return self._idle == 0 and len(self._threads) >= self.size

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run `fn(*args)` on a pool thread; it waits its turn when all threads are busy."""
        future: Future[Any] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the thread pool is shut down")
            self._work.put((future, fn, args))
            if self._idle > 0:
                self._idle -= 1  # an idle thread takes it
            elif len(self._threads) < self.size:
                thread = threading.Thread(
                    target=self._serve,
                    name=f"{self._name}-{len(self._threads)}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()
        return future

    def _serve(self) -> None:
        while True:
            work = self._work.get()
            if work is None:
                return
            future, fn, args = work
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del work, future, fn, args
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        """Take no more work; idle threads end, busy ones end after their job."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._work.put(None)


_default: ThreadPool | None = None
_default_lock = threading.Lock()


def default_pool() -> ThreadPool:
    """The pool for sync jobs run outside a runner (perform_job, inline mode, drain)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ThreadPool(DEFAULT_THREADS, name="jobrunner-sync-default")
        return _default


def use(pool: ThreadPool | None) -> None:
    """Run the current task's sync jobs in `pool` (a job task calls it first)."""
    _pool.set(pool)


async def run(fn: Callable[..., Any], job: Job, *args: Any) -> Any:
    """Run `fn(job, *args)` in the pool, without blocking the event loop.

    Cancelling the wait (a timeout, a cancel, a shutdown) sets the job's stop flag, which
    `job.cancelled()` reads, and returns at once: the thread cannot be killed, so it runs
    on, and what it returns or raises later is dropped.
    """
    pool = _pool.get() or default_pool()
    loop = asyncio.get_running_loop()
    flag = threading.Event()
    context = contextvars.copy_context()
    context.run(_stop_flag.set, (job.id, job.attempt, flag))
    context.run(_loop.set, loop)
    timing = deadline.get()
    if timing is not None and pool.saturated():
        timing[0].reschedule(None)  # waiting for a thread is not the job's time
        fn = partial(_restart_deadline, loop, timing, fn)
    future = asyncio.wrap_future(pool.submit(context.run, fn, job, *args), loop=loop)
    try:
        return await future
    except asyncio.CancelledError:
        flag.set()
        raise


def _restart_deadline(
    loop: asyncio.AbstractEventLoop,
    timing: tuple[asyncio.Timeout, float],
    fn: Callable[..., Any],
    *args: Any,
) -> Any:
    """In the thread: start the job's timeout now, then run it."""
    loop.call_soon_threadsafe(_reschedule, timing[0], loop.time() + timing[1])
    return fn(*args)


def _reschedule(timeout: asyncio.Timeout, when: float) -> None:
    try:
        timeout.reschedule(when)
    except RuntimeError:
        pass  # the attempt already ended (cancelled while the thread started)


def job_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running the current sync job, when called from that job's thread."""
    loop = _loop.get()
    if loop is None:
        return None
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return loop
    return None if running is loop else loop
