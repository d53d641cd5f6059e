"""Reindexer: rebuilds the jobs table's indexes concurrently on a schedule (off by default)."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from croniter import croniter

from jobrunner.core.errors import ConfigError
from jobrunner.db import queries as _queries
from jobrunner.engine.leader import Leadership
from jobrunner.plugins._periodic import Periodic

log = structlog.get_logger("jobrunner.reindexer")


class Reindexer(Periodic):
    """On every slot of `schedule` (a crontab expression, UTC), while this node leads,
    `REINDEX INDEX CONCURRENTLY` each index of the jobs table, one at a time.

    A table whose rows churn leaves its indexes bloated (pages of dead entries that VACUUM
    reclaims only partly); a rebuild makes them compact again. It never blocks inserts,
    claims or acks, but it reads the whole table once per index and needs room for a copy of
    each index while it runs. A rebuild that fails leaves an invalid `_ccnew` copy, which
    the next run drops first. Checks for a due slot every `interval_s`.

    Example:
        >>> reindexer = Reindexer(pool, schedule="0 3 * * *", interval_s=60, leader=leader)
        >>> await reindexer.run()
        ['jobrunner_jobs_executing_idx', 'jobrunner_jobs_fetch_idx', ...]
    """

    name = "reindexer"
    interval_setting = "reindex_check_interval_s"

    def __init__(
        self,
        pool: _queries.Conn,
        *,
        schedule: str,
        interval_s: float,
        timeout_s: float,
        leader: Leadership | None = None,
    ) -> None:
        super().__init__(interval_s=interval_s, leader=leader)
        if not isinstance(schedule, str) or not croniter.is_valid(schedule):
            raise ConfigError(
                f"reindex_schedule must be a crontab expression like '0 3 * * *', got {schedule!r}"
            )
        self._pool = pool
        self.schedule = schedule
        self.timeout_s = timeout_s
        self._next = self._after(datetime.now(UTC))

    def _after(self, at: datetime) -> datetime:
        following: datetime = croniter(self.schedule, at).get_next(datetime)
        return following

    async def _tick(self) -> list[str]:
        now = datetime.now(UTC)
        if now < self._next:
            return []
        self._next = self._after(now)
        if not self.acting:
            return []  # the leader rebuilds
        return await self.run()

    async def run(self) -> list[str]:
        """Drop leftovers of failed rebuilds, then rebuild every index; the names rebuilt."""
        rebuilt = []
        for target in await _queries.reindex_targets(self._pool):
            if target.leftover and target.invalid:
                await _queries.drop_leftover(self._pool, target, timeout_s=self.timeout_s)
                log.info("reindexer.dropped_leftover", index=target.name)
                continue
            started = datetime.now(UTC)
            await _queries.reindex(self._pool, target, timeout_s=self.timeout_s)
            duration_s = (datetime.now(UTC) - started).total_seconds()
            log.info("reindexer.rebuilt", index=target.name, duration_s=round(duration_s, 3))
            rebuilt.append(target.name)
        return rebuilt
