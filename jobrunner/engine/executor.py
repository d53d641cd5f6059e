"""Runs one attempt of a job and maps what it did to an Ack (a pure function)."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import socket
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog

from jobrunner.core import telemetry as _telemetry
from jobrunner.core import threads as _threads
from jobrunner.core.job import (
    Cancel,
    Discard,
    Job,
    Record,
    Snooze,
    check_delay,
    dep_results_reader,
)
from jobrunner.core.worker import Worker, default_backoff, lookup
from jobrunner.db.queries import Ack
from jobrunner.db.queries import workflows as _workflows

if TYPE_CHECKING:
    from jobrunner.db.connection import Connected as Client

# The client running the current job (`jobrunner.current_client()` returns it).
CURRENT_CLIENT: contextvars.ContextVar[Client] = contextvars.ContextVar("jobrunner_client")

COMPLETED, FAILURE, SNOOZED, CANCELLED, DISCARDED = (
    "completed",
    "failure",
    "snoozed",
    "cancelled",
    "discarded",
)
OUTCOMES = (COMPLETED, FAILURE, SNOOZED, CANCELLED, DISCARDED)


class JobTimeout(Exception):
    """The job ran past its timeout and was cancelled."""


@dataclass(frozen=True, slots=True)
class Result:
    """One attempt: the job as it ran, the ack to write, and how it went."""

    job: Job
    ack: Ack
    outcome: str
    exception: BaseException | None = None
    duration_s: float = 0.0
    value: Any = None  # what the worker returned


MESSAGE_CAP = 2_000
"""Characters of an error message kept in the job's errors and in the log."""
TRACEBACK_CAP = 16_000
"""Characters of a traceback kept in the job's errors (its end, where the error is)."""
MAX_ERRORS = 20
"""Errors kept per job, the latest ones (sql/ack_and_fetch_jobs.sql keeps the same count)."""


def clean_text(text: str, cap: int, *, keep_end: bool = False) -> str:
    """`text` as PostgreSQL stores it: NUL and lone surrogates written as escapes, at most
    `cap` characters (the start, or the end with `keep_end`)."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) <= cap:
        return text
    cut = len(text) - cap
    if keep_end:
        return f"[{cut} characters cut]...{text[cut:]}"
    return f"{text[:cap]}...[{cut} characters cut]"


def error_entry(attempt: int, message: str, tb: str | None = None) -> str:
    """One entry of a job's errors, as the JSON object the ack statement appends."""
    entry = {
        "attempt": attempt,
        "at": datetime.now(UTC).isoformat(),
        "error": clean_text(message, MESSAGE_CAP),
        "traceback": None if tb is None else clean_text(tb, TRACEBACK_CAP, keep_end=True),
    }
    return json.dumps(entry)


def describe(exc: BaseException) -> str:
    """`Type: message` of an exception, as stored and logged (capped, escaped)."""
    try:
        text = str(exc)
    except Exception:  # a broken __str__ is still a failure to record
        text = "<the exception's message could not be read>"
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return clean_text(message, MESSAGE_CAP)


def _error(job: Job, message: str, exc: BaseException | None) -> str:
    tb = "".join(traceback.format_exception(exc)) if exc is not None else None
    return error_entry(job.attempt, message, tb)


def claim_of(job: Job) -> str | None:
    """The claim that started this run of `job` (`attempted_by` is [node, claim]); None for a
    claim without an id (a job run in-process)."""
    return job.attempted_by[1] if len(job.attempted_by) > 1 else None


RunKey = tuple[int, str | None]


def run_key(job: Job) -> RunKey:
    """One run of a job: its id and its claim. A node that claims a job again (it was
    rescued while this node was paused) starts a different run of the same id."""
    return job.id, claim_of(job)


def to_ack(
    job: Job, value: Any, exc: BaseException | None, backoff_s: float | None
) -> tuple[Ack, str]:
    """Map a worker's return value or exception to the ack and outcome name.

    None (or any other value) completes; Record completes and stores its value; Snooze
    reschedules without using an attempt; Cancel and Discard end the job; an exception
    retries after `backoff_s`, or discards when the job has no attempts left. The ack names
    the run's claim, so that it only ever ends this run.
    """
    if exc is None and value is None:  # most jobs: built once, not copied to add the claim
        final = job.attempt >= job.max_attempts
        return Ack(job.id, job.attempt, "completed", final=final, claim=claim_of(job)), COMPLETED
    ack, outcome = _outcome(job, value, exc, backoff_s)
    return replace(ack, claim=claim_of(job)), outcome


def _outcome(
    job: Job, value: Any, exc: BaseException | None, backoff_s: float | None
) -> tuple[Ack, str]:
    final = job.attempt >= job.max_attempts
    if exc is not None:
        error = _error(job, describe(exc), exc)
        if final:
            return Ack(job.id, job.attempt, "discarded", error=error, final=True), DISCARDED
        delay = backoff_s if backoff_s is not None else default_backoff(job.attempt)
        ack = Ack(job.id, job.attempt, "retryable", delay_s=max(delay, 0.0), error=error)
        return ack, FAILURE
    if isinstance(value, Snooze):
        ack = Ack(
            job.id, job.attempt, "scheduled", delay_s=value.seconds, undo_attempt=True, final=final
        )
        return ack, SNOOZED
    if isinstance(value, Cancel):
        error = _error(job, str(value.reason), None)
        return Ack(job.id, job.attempt, "cancelled", error=error, final=final), CANCELLED
    if isinstance(value, Discard):
        error = _error(job, str(value.reason), None)
        return Ack(job.id, job.attempt, "discarded", error=error, final=final), DISCARDED
    if isinstance(value, Record):
        return Ack(job.id, job.attempt, "completed", final=final, result=value.encoded), COMPLETED
    return Ack(job.id, job.attempt, "completed", final=final), COMPLETED


def refused_ack(ack: Ack, reason: str) -> Ack:
    """What to write for `ack` once the database refused it: a failed attempt of its job,
    recording why, retried after the default backoff or discarded on its last attempt."""
    error = error_entry(ack.attempt, f"the database refused this attempt's outcome: {reason}")
    if ack.final or ack.state in ("discarded", "cancelled"):
        return Ack(ack.job_id, ack.attempt, "discarded", error=error, final=True, claim=ack.claim)
    delay = default_backoff(ack.attempt)
    return Ack(
        ack.job_id,
        ack.attempt,
        "retryable",
        delay_s=delay,
        error=error,
        final=True,
        claim=ack.claim,
    )


def unreadable_ack(job_id: int, attempt: int, claim: str | None, exc: BaseException) -> Ack:
    """The ack that sets aside a claimed job that cannot be decoded: discarded, with why."""
    error = error_entry(attempt, f"the job could not be read, set aside: {describe(exc)}")
    return Ack(job_id, attempt, "discarded", error=error, final=True, claim=claim)


def interrupted(job: Job) -> Ack:
    """The ack for a job stopped by a shutdown: back to available in its place in the queue,
    the attempt not counted."""
    return Ack(job.id, job.attempt, "available", undo_attempt=True, claim=claim_of(job))


INTERRUPTED = "interrupted"


def _fields(job: Job) -> dict[str, Any]:
    return {"job_id": job.id, "worker": job.worker, "queue": job.queue, "attempt": job.attempt}


# Long: one attempt's telemetry, job context and outcome in order, their try blocks nested.
async def _dep_results(client: Client, job_id: int) -> dict[str, Any]:
    """`Job.dep_results()` in an attempt: through the running client's pool, read only when
    called (a client of perform_job may have none)."""
    return await _workflows.dep_results(client.pool, job_id)


async def execute(
    job: Job,
    client: Client,
    cancel_reasons: Mapping[RunKey, str] | None = None,
    *,
    worker: Worker | None = None,
) -> Result:
    """Run one attempt of `job` (by `worker`, default the one registered under its name);
    never raises but for CancelledError.

    A cancelled attempt emits `job.exception` with the outcome `cancel_reasons[run_key(job)]`
    (default "interrupted") and propagates the cancellation: the caller writes its ack.
    """
    fields = _fields(job)
    fields["queue_time_s"] = _queue_time(job)
    if _telemetry.start_wanted():
        _telemetry.emit(_telemetry.JOB_START, logging.INFO, dict(fields))
    ends = _telemetry.attempt_started(job) if _telemetry.attempt_observers else None
    token = CURRENT_CLIENT.set(client)
    reader = dep_results_reader.set(partial(_dep_results, client))
    started = time.perf_counter()
    try:
        bound = structlog.contextvars.bind_contextvars(
            job_id=job.id,
            worker=job.worker,
            queue=job.queue,
            attempt=job.attempt,
        )
        try:
            worker, value, exc = await _perform(job, worker)
        finally:
            structlog.contextvars.reset_contextvars(**bound)
    except asyncio.CancelledError:
        reason = (cancel_reasons or {}).get(run_key(job), INTERRUPTED)
        _telemetry.emit(
            _telemetry.JOB_EXCEPTION,
            logging.WARNING,
            {
                **fields,
                "duration_s": round(time.perf_counter() - started, 6),
                "outcome": reason,
                "error": "CancelledError",
            },
        )
        if ends:
            _telemetry.attempt_ended(ends, reason, None)
        raise
    finally:
        dep_results_reader.reset(reader)
        CURRENT_CLIENT.reset(token)
    duration_s = time.perf_counter() - started
    backoff_s = _backoff(worker, job, exc) if exc is not None else None
    ack, outcome = to_ack(job, value, exc, backoff_s)
    if outcome == COMPLETED and value is not None and not isinstance(value, Record):
        _warn_unexpected_return(job, value)
    fields["duration_s"] = round(duration_s, 6)
    fields["outcome"] = outcome
    if exc is not None:
        fields["error"] = describe(exc)
        _telemetry.emit(_telemetry.JOB_EXCEPTION, logging.WARNING, fields)
    else:
        _telemetry.emit(_telemetry.JOB_STOP, logging.INFO, fields)
    if ends:
        _telemetry.attempt_ended(ends, outcome, exc)
    return Result(job, ack, outcome, exc, duration_s, value)


async def _perform(
    job: Job,
    given: Worker | None = None,
) -> tuple[Worker | None, Any, Exception | None]:
    """The worker, and what it returned or raised; an unknown worker is an error on the job."""
    worker: Worker | None = None
    try:
        worker = given or lookup(job.worker)
        return worker, await _call(worker, job), None
    except Exception as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # The worker turned our cancellation into an error: honour the cancellation.
            raise asyncio.CancelledError from exc
        return worker, None, exc


async def _call(worker: Worker, job: Job) -> Any:
    timeout_s = worker.timeout_for(job)
    if timeout_s is None:
        return await worker.perform(job)
    deadline = asyncio.timeout(timeout_s)
    timing = _threads.deadline.set((deadline, timeout_s))  # a sync job's clock starts in its thread
    try:
        async with deadline:
            return await worker.perform(job)
    except TimeoutError as timed_out:
        if not deadline.expired():
            raise
        raise JobTimeout(f"job timed out after {timeout_s:g}s") from timed_out
    finally:
        _threads.deadline.reset(timing)


def _backoff(worker: Worker | None, job: Job, error: BaseException) -> float:
    if worker is None:
        return default_backoff(job.attempt)
    log = structlog.get_logger("jobrunner")
    try:
        return check_delay("backoff", worker.backoff(replace(job, unsaved_error=error)))
    except ValueError as exc:
        log.error("job.backoff_refused", error=str(exc), **_fields(job))
    except Exception:
        log.exception("job.backoff_failed", **_fields(job))
    return default_backoff(job.attempt)


_WARNED_RETURNS: set[str] = set()


def _warn_unexpected_return(job: Job, value: Any) -> None:
    """Once per worker: it returned something that is not an outcome, and the job completed
    (an Oban habit such as `("error", reason)` would otherwise pass unnoticed)."""
    if job.worker in _WARNED_RETURNS:
        return
    _WARNED_RETURNS.add(job.worker)
    text = repr(value)
    structlog.get_logger("jobrunner").warning(
        "job.unexpected_return",
        worker=job.worker,
        job_id=job.id,
        returned=text if len(text) <= 200 else text[:197] + "...",
        type=type(value).__name__,
        hint="the job completed; return None, Record, Snooze, Cancel or Discard, or raise to retry",
    )


def _queue_time(job: Job) -> float | None:
    if job.attempted_at is None or job.scheduled_at is None:
        return None
    return round(max((job.attempted_at - job.scheduled_at).total_seconds(), 0.0), 6)


def inline_node() -> str:
    """The name under which a process runs jobs itself (inline mode, drain)."""
    return f"{socket.gethostname()}-{os.getpid()}-inline"
