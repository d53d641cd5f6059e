"""structlog setup, the job event names, and in-process subscriptions to them."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import orjson
import structlog

if TYPE_CHECKING:
    from jobrunner.core.job import Job
    from jobrunner.core.new_job import NewJob

JOB_START = "job.start"
JOB_STOP = "job.stop"
JOB_EXCEPTION = "job.exception"
WEB_ACTION = "web.action"  # an operator's action in the dashboard, for audit
EVENTS = (JOB_START, JOB_STOP, JOB_EXCEPTION, WEB_ACTION)

Handler = Callable[[str, dict[str, Any]], None]
_handlers: dict[str, list[Handler]] = {name: [] for name in EVENTS}
log = structlog.get_logger("jobrunner")


def subscribe(handler: Handler, events: Iterable[str] = EVENTS) -> Callable[[], None]:
    """Call `handler(event, fields)` on each job event in this process; returns an unsubscribe.

    Example:
        >>> def on_event(event: str, fields: dict) -> None:
        ...     metrics.timing(event, fields.get("duration_s"))
        >>> unsubscribe = jobrunner.subscribe(on_event, ["job.stop"])
    """
    names = list(events)
    for name in names:
        if name not in _handlers:
            raise ValueError(f"unknown event {name!r}; events are {', '.join(EVENTS)}")
        _handlers[name].append(handler)

    def unsubscribe() -> None:
        for name in names:
            if handler in _handlers[name]:
                _handlers[name].remove(handler)

    return unsubscribe


def emit(event: str, level: int, fields: dict[str, Any]) -> None:
    """Log `event` and hand it to subscribers; a failing subscriber never fails a job."""
    (_job_log or _default_job_log()).write(event, level, fields)
    for handler in _handlers[event]:
        try:
            handler(event, fields)
        except Exception:
            log.exception("telemetry.handler_failed", handler=repr(handler))


def start_wanted() -> bool:
    """Whether a job's start event goes anywhere: a subscriber, or the job log at its level
    (`job.start` is at debug unless `log_job_start`). The executor skips building it if not."""
    job_log = _job_log or _default_job_log()
    return bool(_handlers[JOB_START]) or job_log.writes_start()


# Hooks for metrics, tracing and error reports. Each is empty or None unless a daemon or an
# integration installs one, so the job path pays one check for each when nothing listens.

AttemptEnd = Callable[[str, "BaseException | None"], None]


class AttemptObserver(Protocol):
    """Told when an attempt starts; what it returns is called once the attempt ends, with
    the outcome and the exception the worker raised (None when it returned)."""

    def __call__(self, job: Job, /) -> AttemptEnd | None: ...


class InsertTracer(Protocol):
    """Wraps the insert of a batch (a span around it, trace context put in the jobs' meta)."""

    def __call__(
        self,
        insert: Callable[[list[NewJob]], Awaitable[list[Job]]],
        jobs: list[NewJob],
        /,
    ) -> Awaitable[list[Job]]: ...


attempt_observers: list[AttemptObserver] = []
insert_tracer: InsertTracer | None = None
# batch(kind, queue, size): a fetch's claimed jobs ("fetch") or a written batch of acks ("ack").
on_batch: Callable[[str, str, int], None] | None = None


def attempt_started(job: Job) -> list[AttemptEnd]:
    """Tell the observers that an attempt of `job` starts; a failing observer is logged."""
    ends = []
    for observer in attempt_observers:
        try:
            end = observer(job)
        except Exception:
            log.exception("telemetry.observer_failed", observer=repr(observer))
            continue
        if end is not None:
            ends.append(end)
    return ends


def attempt_ended(ends: list[AttemptEnd], outcome: str, exc: BaseException | None) -> None:
    for end in ends:
        try:
            end(outcome, exc)
        except Exception:
            log.exception("telemetry.observer_failed", observer=repr(end))


def error_observer(report: Callable[[Job, BaseException], object]) -> AttemptObserver:
    """An observer that hands each failed attempt's exception to `report(job, exc)` (the
    `on_error` setting): once per attempt that raised, timed out or named no worker."""

    def observe(job: Job) -> AttemptEnd:
        def end(_outcome: str, exc: BaseException | None) -> None:
            if exc is None:
                return
            result = report(job, exc)
            if asyncio.iscoroutine(result):
                task = asyncio.ensure_future(result)
                _reports.add(task)
                task.add_done_callback(_report_done)

        return end

    return observe


_reports: set[asyncio.Future[Any]] = set()


def _report_done(task: asyncio.Future[Any]) -> None:
    _reports.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("telemetry.on_error_failed", error=repr(task.exception()))


def batch(kind: str, queue: str, size: int) -> None:
    """Report a batch's size to the installed metrics, if any."""
    hook = on_batch
    if hook is not None:
        try:
            hook(kind, queue, size)
        except Exception:
            log.exception("telemetry.observer_failed", observer=repr(hook))


def configure_logging(
    level: str = "info",
    fmt: str = "auto",
    *,
    job_start: bool = False,
    job_events: str = "jobrunner",
) -> None:
    """structlog for the whole process (the CLI owns its process): JSON lines when stdout is
    not a terminal, coloured key-values when it is; and the job events' lines (see
    `configure_job_log`)."""
    numeric = level_number(level)
    console = _console(fmt)
    renderer: Any = (
        structlog.dev.ConsoleRenderer()
        if console
        else structlog.processors.JSONRenderer(serializer=_dumps)
    )
    processors = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _Timestamper(),
        structlog.processors.format_exc_info,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=lambda *_args: _TurnFlushedLogger(sys.stdout),
        cache_logger_on_first_use=True,
    )
    configure_job_log(level, fmt, job_start=job_start, job_events=job_events)


def level_number(level: str) -> int:
    try:
        return logging.getLevelNamesMapping()[level.upper()]
    except KeyError:
        raise ValueError(
            f"log level must be debug, info, warning or error, got {level!r}"
        ) from None


def _console(fmt: str) -> bool:
    return fmt == "console" or (fmt == "auto" and sys.stdout.isatty())


JOB_EVENTS_ROUTES = ("jobrunner", "structlog")


def configure_job_log(
    level: str = "info",
    fmt: str = "auto",
    *,
    job_start: bool = False,
    job_events: str = "jobrunner",
) -> None:
    """How the job events are logged, whatever the application did with structlog.

    By default (`job_events="jobrunner"`) jobrunner writes them itself to stdout: JSON lines,
    or structlog's console renderer when stdout is a terminal (`fmt="auto"`). One line per
    finished attempt (`job.stop` at info, `job.exception` at warning); `job.start` is at
    debug unless `job_start`. With `job_events="structlog"` they go through structlog's
    configuration instead (the application's processors, level and output).
    """
    if job_events not in JOB_EVENTS_ROUTES:
        raise ValueError(f"log_job_events must be jobrunner or structlog, got {job_events!r}")
    global _job_log
    _job_log = _JobLog(
        level_number(level),
        start_level=logging.INFO if job_start else logging.DEBUG,
        console=_console(fmt),
        via_structlog=job_events == "structlog",
    )


def job_log_from(settings: Any) -> None:
    """`configure_job_log` with a Settings' log_level, log_format, log_job_start and
    log_job_events (what a Runner applies when it starts)."""
    configure_job_log(
        settings.log_level,
        settings.log_format,
        job_start=settings.log_job_start,
        job_events=settings.log_job_events,
    )


# The daemon logs a line or two per job: what follows keeps a line cheap. Through structlog,
# a line went through a bound logger, its processor chain and a copy of the event dict, and
# an application that never configured structlog got its development console renderer on
# every job: about half of a no-op job's cost.


class _JobLog:
    """The job events' lines, rendered as `configure_logging`'s processors would render them
    (JSON, or the console renderer), without structlog's processor chain."""

    __slots__ = ("_console", "_level", "_logger", "_start_level", "_timestamper", "_via_structlog")

    def __init__(self, level: int, *, start_level: int, console: bool, via_structlog: bool) -> None:
        self._level = level
        self._start_level = start_level
        self._console: Any = structlog.dev.ConsoleRenderer() if console else None
        self._via_structlog = via_structlog
        self._timestamper = _Timestamper()
        self._logger = _TurnFlushedLogger(sys.stdout)

    def writes_start(self) -> bool:
        """Whether a `job.start` line is written (or handed to structlog)."""
        return self._via_structlog or self._start_level >= self._level

    def write(self, event: str, level: int, fields: dict[str, Any]) -> None:
        if event == JOB_START:
            level = self._start_level
        if self._via_structlog:
            log.log(level, event, **fields)
            return
        if level < self._level:
            return
        line = dict(fields)
        line["event"] = event
        for key, value in structlog.contextvars.get_contextvars().items():
            line.setdefault(key, value)
        line["level"] = _LEVEL_NAMES[level]
        self._timestamper(None, "", line)
        text = _dumps(line) if self._console is None else self._console(None, "", line)
        logger = self._logger
        if logger._file is not sys.stdout:  # replaced since (pytest's capture, a redirect)
            logger = self._logger = _TurnFlushedLogger(sys.stdout)
        logger.msg(text)


_LEVEL_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}
_job_log: _JobLog | None = None


def _default_job_log() -> _JobLog:
    """Until a runner or the CLI configures it: info, JSON unless stdout is a terminal."""
    configure_job_log()
    assert _job_log is not None
    return _job_log


class _TurnFlushedLogger(structlog.WriteLogger):
    """Writes each line at once and flushes once per turn of the event loop.

    A daemon logs a line per job start and stop; flushing each was a system call per line,
    the largest cost of a no-op job. The lines of one turn now go out in one write before
    the loop next waits; without a running loop (start-up, other threads) a line is
    flushed at once.
    """

    def __init__(self, file: Any = None) -> None:
        super().__init__(file)
        self._flush_on: asyncio.AbstractEventLoop | None = None

    def msg(self, message: str) -> None:
        with self._lock:
            self._write(message + "\n")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._flush()
            return
        if self._flush_on is not loop:
            self._flush_on = loop
            loop.call_soon(self._flush_turn)

    def _flush_turn(self) -> None:
        self._flush_on = None
        with self._lock:
            self._flush()

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class _Timestamper:
    """What TimeStamper(fmt="iso", utc=True) adds, with the date formatted once a second."""

    __slots__ = ("_cached",)

    def __init__(self) -> None:
        self._cached = (-1, "")

    def __call__(self, _logger: Any, _name: str, event_dict: Any) -> Any:
        now = time.time()
        second, prefix = self._cached
        if int(now) != second:
            second = int(now)
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._cached = (second, prefix)
        event_dict["timestamp"] = f"{prefix}.{int((now - second) * 1_000_000):06d}Z"
        return event_dict


def _fallback(value: Any) -> Any:
    """Values JSON has no type for: their `__structlog__()`, else their repr (as structlog)."""
    try:
        return value.__structlog__()
    except AttributeError:
        return repr(value)


def _dumps(event_dict: Any, **_kwargs: Any) -> str:
    """orjson (a tenth of json.dumps's cost); json for what orjson refuses (huge ints, ...)."""
    try:
        return orjson.dumps(event_dict, default=_fallback).decode()
    except TypeError:
        return json.dumps(event_dict, default=_fallback)
