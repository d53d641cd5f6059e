"""Stager: makes scheduled and retryable jobs available once their time has come."""

from __future__ import annotations

import structlog

from jobrunner.core.errors import ConfigError
from jobrunner.db import queries as _queries
from jobrunner.plugins._periodic import Periodic

log = structlog.get_logger("jobrunner.stager")


class Stager(Periodic):
    """Every `interval_s`, moves due `scheduled`/`retryable` jobs to `available`.

    Works in batches of `batch_size` (one short statement each, SKIP LOCKED, so several
    nodes staging at once neither wait nor double up) and NOTIFYs `jobrunner_insert` once
    per queue so that producers everywhere wake. Runs on every node: it is cheap.

    Example:
        >>> stager = Stager(pool, interval_s=1.0, batch_size=5_000)
        >>> await stager._tick()
        {'emails': 3}
    """

    name = "stager"
    interval_setting = "stage_interval_s"

    def __init__(self, pool: _queries.Conn, *, interval_s: float, batch_size: int) -> None:
        super().__init__(interval_s=interval_s)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"stage_batch_size must be an integer >= 1, got {batch_size!r}")
        self._pool = pool
        self.batch_size = batch_size

    async def _tick(self) -> dict[str, int]:
        """Stage every due job, a batch at a time; queue -> how many were staged."""
        total: dict[str, int] = {}
        while True:
            staged = await _queries.stage_jobs(self._pool, limit=self.batch_size)
            for queue, count in staged.items():
                total[queue] = total.get(queue, 0) + count
            if sum(staged.values()) < self.batch_size:
                break
        if total:
            log.debug("stager.staged", queues=total)
        return total
