"""Crontab entries declared in code (scheduled triggers), run beside the configured crontab.

A definition adds its entry when its module is imported (the daemon imports `--app` before
it builds its plugins); the cron plugin then inserts that entry's job once per slot, as for
a configured entry.
"""

from __future__ import annotations

from jobrunner.core.config import CronEntry

_ENTRIES: dict[str, CronEntry] = {}


def add(entry: CronEntry) -> None:
    """Run `entry` with the crontab (an entry of the same key replaces it)."""
    _ENTRIES[entry.key] = entry


def remove(key: str) -> None:
    """Stop running the entry called `key` (nothing if there is none)."""
    _ENTRIES.pop(key, None)


def entries() -> tuple[CronEntry, ...]:
    """The entries declared in code, in the order they were added."""
    return tuple(_ENTRIES.values())
