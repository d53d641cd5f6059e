"""Cron math without a database: slots, catch-up windows, DST, validation, unique keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobrunner import ConfigError, CronEntry, Job, worker
from jobrunner.plugins import cron
from jobrunner.plugins.cron import (
    due_slots,
    latest_slot,
    next_slot,
    parse,
    parse_all,
    slot_key,
    slots_between,
)


@worker(queue="reports", priority=3, max_attempts=4, tags=["cron"], name="sched_unit.report")
async def report(job: Job) -> None:
    """A worker for crontab entries to name."""


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def schedule(expression: str, *, timezone: str = "UTC", **kwargs: object) -> cron.Schedule:
    return parse(CronEntry(expression, "sched_unit.report", timezone=timezone, **kwargs))  # type: ignore[arg-type]


EVERY_5_S = schedule("* * * * * */5")
HOURLY = schedule("0 * * * *")


def test_latest_slot_is_at_or_before_the_time() -> None:
    assert latest_slot(EVERY_5_S, at(2024, 1, 1, 0, 0, 7)) == at(2024, 1, 1, 0, 0, 5)
    assert latest_slot(EVERY_5_S, at(2024, 1, 1, 0, 0, 5)) == at(2024, 1, 1, 0, 0, 5)
    moment = at(2024, 1, 1, 0, 0, 4) + timedelta(microseconds=999_999)
    assert latest_slot(EVERY_5_S, moment) == at(2024, 1, 1, 0, 0, 0)
    assert latest_slot(HOURLY, at(2024, 1, 1, 0, 59, 59)) == at(2024, 1, 1, 0, 0)


def test_next_slot_is_strictly_after() -> None:
    assert next_slot(EVERY_5_S, at(2024, 1, 1, 0, 0, 5)) == at(2024, 1, 1, 0, 0, 10)
    assert next_slot(HOURLY, at(2024, 1, 1, 0, 0, 0, 1)) == at(2024, 1, 1, 1, 0)


def test_slots_between_is_half_open_and_bounded() -> None:
    start, end = at(2024, 1, 1, 0, 0, 0), at(2024, 1, 1, 0, 0, 20)
    expected = [at(2024, 1, 1, 0, 0, s) for s in (5, 10, 15, 20)]
    assert slots_between(EVERY_5_S, start, end) == expected
    assert slots_between(EVERY_5_S, start, end, limit=2) == [
        at(2024, 1, 1, 0, 0, 5),
        at(2024, 1, 1, 0, 0, 10),
    ]
    assert slots_between(EVERY_5_S, end, end) == []


def test_due_slots_in_normal_operation_is_the_next_slot() -> None:
    due = due_slots(
        EVERY_5_S,
        last=at(2024, 1, 1, 0, 0, 5),
        at=at(2024, 1, 1, 0, 0, 10, 200),
        catch_up_s=None,
        grace_s=4,
    )
    assert due == [at(2024, 1, 1, 0, 0, 10)]
    none_yet = due_slots(
        EVERY_5_S,
        last=at(2024, 1, 1, 0, 0, 10),
        at=at(2024, 1, 1, 0, 0, 14),
        catch_up_s=None,
        grace_s=4,
    )
    assert none_yet == []


def test_slots_missed_within_the_grace_are_all_inserted() -> None:
    """A leader handover skips a few ticks: every slot it missed is still inserted once."""
    every_second = schedule("* * * * * *")
    due = due_slots(
        every_second,
        last=at(2024, 1, 1, 0, 0, 10),
        at=at(2024, 1, 1, 0, 0, 13, 500),
        catch_up_s=None,
        grace_s=5,
    )
    assert due == [at(2024, 1, 1, 0, 0, s) for s in (11, 12, 13)]


def test_after_downtime_only_the_most_recent_missed_slot_by_default() -> None:
    due = due_slots(
        HOURLY, last=at(2024, 1, 1, 0, 0), at=at(2024, 1, 1, 9, 30), catch_up_s=None, grace_s=32
    )
    assert due == [at(2024, 1, 1, 9, 0)]


def test_after_downtime_every_slot_within_catch_up_once() -> None:
    due = due_slots(
        HOURLY, last=at(2024, 1, 1, 0, 0), at=at(2024, 1, 1, 9, 30), catch_up_s=3 * 3600, grace_s=32
    )
    assert due == [at(2024, 1, 1, 7, 0), at(2024, 1, 1, 8, 0), at(2024, 1, 1, 9, 0)]
    # Nothing is inserted twice: the next tick starts after the last slot inserted.
    again = due_slots(
        HOURLY, last=at(2024, 1, 1, 9, 0), at=at(2024, 1, 1, 9, 31), catch_up_s=3 * 3600, grace_s=32
    )
    assert again == []


def test_catch_up_drops_slots_older_than_the_window() -> None:
    due = due_slots(
        HOURLY, last=at(2024, 1, 1, 0, 0), at=at(2024, 1, 1, 9, 30), catch_up_s=600, grace_s=32
    )
    assert due == []
    zero = due_slots(
        HOURLY, last=at(2024, 1, 1, 0, 0), at=at(2024, 1, 1, 9, 0, 10), catch_up_s=0, grace_s=32
    )
    assert zero == [at(2024, 1, 1, 9, 0)]


def test_a_long_catch_up_is_capped_per_tick() -> None:
    every_second = schedule("* * * * * *")
    due = due_slots(
        every_second, last=at(2024, 1, 1), at=at(2024, 1, 1, 1), catch_up_s=3600, grace_s=5
    )
    assert len(due) == cron.MAX_SLOTS_PER_TICK
    assert due[0] == at(2024, 1, 1, 0, 0, 1)


def test_slots_follow_the_entry_time_zone() -> None:
    madrid = schedule("0 8 * * *", timezone="Europe/Madrid")
    assert latest_slot(madrid, at(2024, 1, 15, 12)) == at(2024, 1, 15, 7)  # CET, UTC+1
    assert latest_slot(madrid, at(2024, 7, 15, 12)) == at(2024, 7, 15, 6)  # CEST, UTC+2
    assert next_slot(madrid, at(2024, 3, 30, 12)) == at(2024, 3, 31, 6)  # across spring DST


def test_a_fixed_time_in_the_repeated_autumn_hour_fires_once() -> None:
    night = schedule("30 2 * * *", timezone="Europe/Madrid")
    slots = slots_between(night, at(2024, 10, 26, 12), at(2024, 10, 28, 12))
    assert slots == [at(2024, 10, 27, 0, 30), at(2024, 10, 28, 1, 30)]
    assert latest_slot(night, at(2024, 10, 27, 1, 45)) == at(2024, 10, 27, 0, 30)


def test_a_wildcard_hour_keeps_running_through_the_repeated_hour() -> None:
    half_hourly = schedule("*/30 * * * *", timezone="Europe/Madrid")
    slots = slots_between(half_hourly, at(2024, 10, 27, 0, 10), at(2024, 10, 27, 2, 10))
    assert slots == [
        at(2024, 10, 27, 0, 30),
        at(2024, 10, 27, 1, 0),
        at(2024, 10, 27, 1, 30),
        at(2024, 10, 27, 2, 0),
    ]


def test_the_job_of_a_slot_has_a_deterministic_key_and_meta() -> None:
    entry = schedule("0 * * * *", args={"kind": "hourly"}, name="hourly-report")
    slot = at(2024, 1, 1, 9)
    assert slot_key(entry, slot) == "cron:hourly-report:2024-01-01T09:00:00+00:00"
    built = cron._build(entry, slot)
    assert built.unique_key == "cron:hourly-report:2024-01-01T09:00:00+00:00"
    job = built.job
    assert job.meta == {"cron": "hourly-report", "cron_slot": "2024-01-01T09:00:00+00:00"}
    assert (job.worker, job.args, job.queue, job.priority, job.max_attempts, job.tags) == (
        "sched_unit.report",
        {"kind": "hourly"},
        "reports",
        3,
        4,
        ("cron",),
    )
    assert job.unique is None


def test_entry_options_override_the_worker() -> None:
    entry = schedule("0 * * * *", queue="urgent", priority=0, max_attempts=1)
    job = cron._build(entry, at(2024, 1, 1)).job
    assert (job.queue, job.priority, job.max_attempts) == ("urgent", 0, 1)
    assert entry.key == "sched_unit.report@0 * * * *"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            CronEntry("every day", "sched_unit.report"),
            "crontab entry 'sched_unit.report@every day' has invalid schedule 'every day'; "
            "use 5 fields (minute hour day month weekday), or 6 with seconds last",
        ),
        (CronEntry("61 * * * *", "sched_unit.report"), "has invalid schedule '61 * * * *'"),
        (
            CronEntry("0 0 30 2 *", "sched_unit.report"),
            "schedule '0 0 30 2 *' never fires; check its day and month",
        ),
        (
            CronEntry("* * * * *", "myapp.missing", name="sync"),
            "crontab entry 'sync' names unknown worker 'myapp.missing'; is its module in --app?",
        ),
        (
            CronEntry("* * * * *", "sched_unit.report", timezone="Mars/Olympus"),
            "has unknown timezone 'Mars/Olympus'; use an IANA name like 'Europe/Madrid' or 'UTC'",
        ),
        (CronEntry("* * * * *", "sched_unit.report", priority=12), "priority must be an integer"),
        (
            CronEntry("* * * * *", "sched_unit.report", args=[1]),  # type: ignore[arg-type]
            "args must be a JSON object",
        ),
    ],
)
def test_invalid_entries_fail_with_one_clear_line(entry: CronEntry, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse(entry)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_two_entries_with_one_key_are_refused() -> None:
    entries = (
        CronEntry("0 * * * *", "sched_unit.report", name="report"),
        CronEntry("30 * * * *", "sched_unit.report", name="report"),
    )
    with pytest.raises(ConfigError, match="crontab has two entries called 'report'"):
        parse_all(entries)
    distinct = parse_all(
        (CronEntry("0 * * * *", "sched_unit.report"), CronEntry("30 * * * *", "sched_unit.report"))
    )
    assert [s.key for s in distinct] == [
        "sched_unit.report@0 * * * *",
        "sched_unit.report@30 * * * *",
    ]


def test_fixed_time_follows_crons_wildcard_rule() -> None:
    assert schedule("30 2 * * *").fixed_time
    assert schedule("@daily").fixed_time
    assert not schedule("@hourly").fixed_time
    assert not schedule("*/15 2 * * *").fixed_time
    assert not schedule("0 * * * *").fixed_time
