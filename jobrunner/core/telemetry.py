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
EVENTS = (JOB_START, JOB_STOP, JOB_EXCEPTION)

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
    lines = _job_lines
    if lines is not None and lines.current():
        lines.write(event, level, fields)
    else:
        log.log(level, event, **fields)
    for handler in _handlers[event]:
        try:
            handler(event, fields)
        except Exception:
            log.exception("telemetry.handler_failed", handler=repr(handler))


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


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """JSON lines when stdout is not a terminal, coloured key-values when it is."""
    try:
        numeric = logging.getLevelNamesMapping()[level.upper()]
    except KeyError:
        raise ValueError(
            f"log level must be debug, info, warning or error, got {level!r}"
        ) from None
    console = fmt == "console" or (fmt == "auto" and sys.stdout.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer()
        if console
        else structlog.processors.JSONRenderer(serializer=_dumps)
    )
    global _job_lines
    timestamper = _Timestamper()
    processors = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        timestamper,
        structlog.processors.format_exc_info,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=lambda *_args: _TurnFlushedLogger(sys.stdout),
        cache_logger_on_first_use=True,
    )
    _job_lines = None if console else _JobLines(processors, numeric, timestamper)


# The daemon logs two lines per job: what follows keeps a line cheap (a fifth of the CPU
# time of a no-op job went to structlog's stock JSON renderer and timestamper).


class _JobLines:
    """The job events' lines, rendered as the processors above would render them.

    Two lines a job went through structlog's bound logger, its processor chain and a copy
    of the event dict each; this writes the same JSON line directly, as long as the
    configuration is still the one `configure_logging` made (an application that configures
    structlog itself gets its own processors).
    """

    def __init__(self, processors: list[Any], level: int, timestamper: _Timestamper) -> None:
        self._processors = processors
        self._level = level
        self._timestamper = timestamper
        self._logger = _TurnFlushedLogger(sys.stdout)

    def current(self) -> bool:
        return structlog.get_config()["processors"] is self._processors

    def write(self, event: str, level: int, fields: dict[str, Any]) -> None:
        if level < self._level:
            return
        line = dict(fields)
        line["event"] = event
        for key, value in structlog.contextvars.get_contextvars().items():
            line.setdefault(key, value)
        line["level"] = _LEVEL_NAMES[level]
        self._timestamper(None, "", line)
        self._logger.msg(_dumps(line))


_LEVEL_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}
_job_lines: _JobLines | None = None


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
