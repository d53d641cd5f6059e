"""structlog setup, the job event names, and in-process subscriptions to them."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

import structlog

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
    log.log(level, event, **fields)
    for handler in _handlers[event]:
        try:
            handler(event, fields)
        except Exception:
            log.exception("telemetry.handler_failed", handler=repr(handler))


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
        structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
