"""Time-based loops: staging, cron, pruning and rescue of orphaned jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..runner import Runner


def build(runner: Runner) -> list[Any]:
    """The plugins a node runs, in start order."""
    return []
