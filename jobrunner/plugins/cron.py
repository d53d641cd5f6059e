"""Cron: the leader inserts one job per crontab entry and time slot, enforced by the database."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from croniter import CroniterError, croniter

from jobrunner.core.config import CronEntry
from jobrunner.core.errors import ConfigError, JobRunnerError
from jobrunner.core.job import Job
from jobrunner.core.worker import Worker, lookup
from jobrunner.db import queries as _queries
from jobrunner.engine.leader import Leadership
from jobrunner.plugins._periodic import Periodic

log = structlog.get_logger("jobrunner.cron")

MAX_SLOTS_PER_TICK = 100
"""At most this many slots of one entry are inserted per tick (a long catch-up continues)."""

AHEAD_TOLERANCE = timedelta(seconds=1)
"""How far ahead of the database's present a stored slot may be before it counts as left by
a clock that stepped back (or jumped forward for a while): cron then resumes from the present."""

CLOCK_JUMP_S = 60.0
"""A tick whose database clock moved this much more (or less) than real time logs a jump."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """A validated crontab entry: its expression, time zone and worker."""

    entry: CronEntry
    zone: ZoneInfo
    worker: Worker

    @property
    def key(self) -> str:
        return self.entry.key

    @property
    def expression(self) -> str:
        return self.entry.schedule

    @property
    def fixed_time(self) -> bool:
        """True unless the minute or hour is a wildcard (cron's rule for DST changes)."""
        expression = self.expression.strip()
        if expression.startswith("@"):
            return expression not in ("@hourly", "@minutely")
        minute, hour = expression.split()[:2]
        return not (minute.startswith("*") or hour.startswith("*"))


def parse(entry: CronEntry) -> Schedule:
    """Validate `entry` against the worker registry; ConfigError names what is wrong.

    Example:
        >>> parse(CronEntry("*/5 * * * *", "myapp.workers.sync")).zone
        zoneinfo.ZoneInfo(key='UTC')
    """
    key = entry.key
    try:
        zone = ZoneInfo(entry.timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError(
            f"crontab entry {key!r} has unknown timezone {entry.timezone!r}; "
            f"use an IANA name like 'Europe/Madrid' or 'UTC'"
        ) from None
    if isinstance(entry.schedule, str) and _unfixed(entry.schedule):
        raise ConfigError(
            f"crontab entry {key!r} schedule {entry.schedule!r} uses R or H, whose slot "
            f"changes from one reading to the next; write the minute and hour out"
        )
    if not isinstance(entry.schedule, str) or not croniter.is_valid(entry.schedule):
        raise ConfigError(
            f"crontab entry {key!r} has invalid schedule {entry.schedule!r}; use 5 "
            f"fields (minute hour day month weekday), or 6 with seconds last"
        )
    try:
        worker = lookup(entry.worker)
    except JobRunnerError:
        raise ConfigError(
            f"crontab entry {key!r} names unknown worker {entry.worker!r}; is its module in --app?"
        ) from None
    schedule = Schedule(entry, zone, worker)
    try:
        _build(schedule, datetime(2000, 1, 1, tzinfo=UTC))
        next_slot(schedule, datetime.now(UTC))
    except (JobRunnerError, TypeError, ValueError) as exc:
        if isinstance(exc, CroniterError):
            raise ConfigError(
                f"crontab entry {key!r} schedule {entry.schedule!r} never "
                f"fires; check its day and month"
            ) from None
        raise ConfigError(f"crontab entry {key!r}: {exc}") from None
    return schedule


def _unfixed(expression: str) -> bool:
    """True when a field is croniter's random (R) or hashed (H) value: not a fixed slot."""
    for part in expression.split():
        for token in part.replace("/", ",").split(","):
            if token[:1] in ("R", "r", "H", "h") and (len(token) == 1 or token[1] == "("):
                return True
    return False


def parse_all(entries: Sequence[CronEntry]) -> list[Schedule]:
    """Validate a crontab; two entries with the same key are refused."""
    schedules = [parse(entry) for entry in entries]
    seen: set[str] = set()
    for schedule in schedules:
        if schedule.key in seen:
            raise ConfigError(
                f"crontab has two entries called {schedule.key!r}; give them distinct names"
            )
        seen.add(schedule.key)
    return schedules


def next_slot(schedule: Schedule, after: datetime) -> datetime:
    """The first slot strictly after `after`, in UTC."""
    it = croniter(schedule.expression, after.astimezone(schedule.zone))
    while True:
        found: datetime = it.get_next(datetime)
        if not _skipped(schedule, found):
            return found.astimezone(UTC)


def latest_slot(schedule: Schedule, at: datetime) -> datetime:
    """The last slot at or before `at`, in UTC."""
    it = croniter(schedule.expression, at.astimezone(schedule.zone))
    while True:
        previous: datetime = it.get_prev(datetime)
        if not _skipped(schedule, previous):
            break
    candidate = next_slot(schedule, previous)
    return candidate if candidate <= at else previous.astimezone(UTC)


def _skipped(schedule: Schedule, local: datetime) -> bool:
    """The second pass of a fixed-time slot through an autumn hour: run it once, as cron does.

    Schedules with a wildcard minute or hour run in both passes (real time goes on).
    """
    repeated = local.fold == 1 and local.utcoffset() != local.replace(fold=0).utcoffset()
    return repeated and schedule.fixed_time


def slots_between(
    schedule: Schedule, after: datetime, until: datetime, limit: int = MAX_SLOTS_PER_TICK
) -> list[datetime]:
    """Slots in (after, until], oldest first, at most `limit`."""
    slots: list[datetime] = []
    slot = next_slot(schedule, after)
    while slot <= until and len(slots) < limit:
        slots.append(slot)
        slot = next_slot(schedule, slot)
    return slots


def due_slots(
    schedule: Schedule,
    *,
    last: datetime,
    at: datetime,
    catch_up_s: float | None,
    grace_s: float,
    limit: int = MAX_SLOTS_PER_TICK,
) -> list[datetime]:
    """The slots to insert now, given the last slot inserted and the time `at`.

    Slots missed by less than `grace_s` (a slow tick, a leader handover) are all inserted.
    Beyond that, with `catch_up_s` None only the most recent missed slot is, however old;
    with a number, every missed slot of the last `catch_up_s` seconds is, and older ones
    are dropped. Never a slot at or before `last`.
    """
    window_s = grace_s if catch_up_s is None else max(catch_up_s, grace_s)
    start = max(last, at - timedelta(seconds=window_s))
    slots = slots_between(schedule, start, at, limit)
    if slots or catch_up_s is not None:
        return slots
    latest = latest_slot(schedule, at)
    return [latest] if latest > last else []


def slot_key(schedule: Schedule, slot: datetime) -> str:
    """The unique key of the job of `schedule` for `slot`."""
    return entry_slot_key(schedule.key, slot)


def entry_slot_key(key: str, slot: datetime) -> str:
    """The unique key of the job of the entry called `key` for `slot`."""
    return f"cron:{key}:{_iso(slot)}"


def _iso(slot: datetime) -> str:
    return slot.astimezone(UTC).isoformat()


def _build(schedule: Schedule, slot: datetime) -> _queries.CronJob:
    entry = schedule.entry
    job = schedule.worker.new(
        entry.args,
        queue=entry.queue,
        priority=entry.priority,
        max_attempts=entry.max_attempts,
        tags=entry.tags,
        meta={**entry.meta, "cron": schedule.key, "cron_slot": _iso(slot)},
        unique=False,
    )
    return _queries.CronJob(job=job, unique_key=slot_key(schedule, slot))


Clock = Callable[[], Awaitable[datetime]]


class Cron(Periodic):
    """Every `interval_s`, while this node leads, inserts the jobs of due crontab slots.

    Slots come from the database's clock; each job's unique key names its entry and slot and
    stays unique in every state, so nodes, leader changes and restarts never insert a slot
    twice. `jobrunner_cron` records each entry's last slot: a new entry starts with the next
    slot, and after downtime `due_slots` decides what is caught up.

    Example:
        >>> cron = Cron(pool, parse_all(settings.crontab), interval_s=1.0, leader=leader)
        >>> await cron._tick()
        [Job(id=7, worker='myapp.workers.report', ...)]
    """

    name = "cron"
    interval_setting = "cron_interval_s"

    def __init__(
        self,
        pool: _queries.Conn,
        schedules: Sequence[Schedule],
        *,
        interval_s: float,
        catch_up_s: float | None = None,
        grace_s: float = 0.0,
        leader: Leadership | None = None,
        now: Clock | None = None,
    ) -> None:
        super().__init__(interval_s=interval_s, leader=leader)
        self._pool = pool
        self.schedules = tuple(schedules)
        self.catch_up_s = catch_up_s
        self.grace_s = grace_s
        self._now: Clock = now or (lambda: _queries.database_now(pool))
        self._previous: tuple[datetime, float] | None = None  # last tick's clock, monotonic

    async def _tick(self) -> list[Job]:
        """Insert the due slots' jobs if this node leads; the jobs inserted."""
        if not self.schedules or not self.acting:
            return []
        at = await self._now()
        self._check_clock(at)
        progress = await _queries.cron_progress(self._pool, [s.key for s in self.schedules])
        jobs: list[_queries.CronJob] = []
        marks: dict[str, datetime] = {}
        for schedule in self.schedules:
            last = progress.get(schedule.key)
            if last is not None and last > at + AHEAD_TOLERANCE:
                log.warning(
                    "cron.clock_jump",
                    cron=schedule.key,
                    last_slot=_iso(last),
                    now=_iso(at),
                    ahead_s=round((last - at).total_seconds(), 3),
                    reason="the stored slot is ahead of the database's clock; resuming from now",
                )
                last = None
            if last is None:
                marks[schedule.key] = latest_slot(schedule, at)  # from the next slot on
                continue
            slots = due_slots(
                schedule, last=last, at=at, catch_up_s=self.catch_up_s, grace_s=self.grace_s
            )
            if slots:
                marks[schedule.key] = slots[-1]
                jobs.extend(_build(schedule, slot) for slot in slots)
        if not marks:
            return []
        inserted = await _queries.insert_cron_jobs(
            self._pool, jobs, marks, present=at + AHEAD_TOLERANCE
        )
        for job in inserted:
            log.info(
                "cron.inserted",
                job_id=job.id,
                worker=job.worker,
                queue=job.queue,
                cron=job.meta["cron"],
                slot=job.meta["cron_slot"],
            )
        return inserted

    def _check_clock(self, at: datetime) -> None:
        """Log when the database's clock moved unlike real time since the last tick."""
        now = time.monotonic()
        previous, self._previous = self._previous, (at, now)
        if previous is None:
            return
        jump_s = (at - previous[0]).total_seconds() - (now - previous[1])
        if abs(jump_s) >= CLOCK_JUMP_S:
            log.warning("cron.clock_jump", jump_s=round(jump_s, 3), now=_iso(at))
