"""Pruner: deletes old completed, cancelled and discarded jobs, a bounded batch at a time,
then the workflow and batch rows none of whose jobs is left."""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from jobrunner.core.config import DAY_S
from jobrunner.core.errors import ConfigError
from jobrunner.db import queries as _queries
from jobrunner.engine.leader import Leadership
from jobrunner.plugins._periodic import Periodic

log = structlog.get_logger("jobrunner.pruner")

PRUNABLE_STATES = ("completed", "cancelled", "discarded")


class Pruner(Periodic):
    """Every `interval_s`, while this node leads, deletes finished jobs older than their age.

    Ages count from completed_at, cancelled_at or discarded_at: `max_age_s` for every
    finished state unless `max_age_by_state` gives one. Each batch of `batch_size` rows is
    one short statement that skips locked rows, so pruning never holds long locks. Then
    the rows of workflows and batches none of whose jobs is left go the same way, once
    older than the shortest of the ages (a workflow whose last steps were just pruned is
    older than that already; a new one emptied by hand is kept that long).

    Example:
        >>> pruner = Pruner(pool, interval_s=60, max_age_s=7 * 86_400,
        ...                 max_age_by_state={"discarded": 30 * 86_400}, batch_size=10_000)
        >>> await pruner._tick()
        {'completed': 1200, 'workflows': 3, 'batches': 1}
    """

    name = "pruner"
    interval_setting = "prune_interval_s"

    def __init__(
        self,
        pool: _queries.Conn,
        *,
        interval_s: float,
        max_age_s: float = 7 * DAY_S,
        max_age_by_state: Mapping[str, float] | None = None,
        batch_size: int = 10_000,
        leader: Leadership | None = None,
    ) -> None:
        super().__init__(interval_s=interval_s, leader=leader)
        self.max_ages = self._validate(max_age_s, dict(max_age_by_state or {}), batch_size)
        self._pool = pool
        self.batch_size = batch_size

    @staticmethod
    def _validate(
        max_age_s: float, by_state: dict[str, float], batch_size: int
    ) -> dict[str, float]:
        unknown = set(by_state) - set(PRUNABLE_STATES)
        if unknown:
            raise ConfigError(
                f"prune_max_age_by_state takes {', '.join(PRUNABLE_STATES)}, "
                f"got {sorted(unknown)!r}"
            )
        ages = {state: float(by_state.get(state, max_age_s)) for state in PRUNABLE_STATES}
        for state, age in ages.items():
            if not age >= 0:
                raise ConfigError(f"prune max age of {state} must be seconds >= 0, got {age!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"prune_batch_size must be an integer >= 1, got {batch_size!r}")
        return ages

    async def _tick(self) -> dict[str, int]:
        """Delete every prunable job, a batch at a time, then the workflow and batch rows
        left without jobs; state (or 'workflows', 'batches') -> how many went."""
        total = await self._prune_jobs()
        min_age_s = min(self.max_ages.values())
        for kind, prune in (
            ("workflows", _queries.prune_workflows),
            ("batches", _queries.prune_batches),
        ):
            while self.acting:
                count = await prune(self._pool, min_age_s=min_age_s, limit=self.batch_size)
                if count:
                    total[kind] = total.get(kind, 0) + count
                if count < self.batch_size:
                    break
        if total:
            log.info("pruner.pruned", states=total)
        return total

    async def _prune_jobs(self) -> dict[str, int]:
        total: dict[str, int] = {}
        while self.acting:
            pruned = await _queries.prune_jobs(
                self._pool,
                completed_s=self.max_ages["completed"],
                cancelled_s=self.max_ages["cancelled"],
                discarded_s=self.max_ages["discarded"],
                limit=self.batch_size,
            )
            for state, count in pruned.items():
                total[state] = total.get(state, 0) + count
            if sum(pruned.values()) < self.batch_size:
                break
        return total
