"""Applies control commands (pause, resume, scale, stop) aimed at this node."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runner import Runner


class Controller:
    """Applies rows of jobrunner_control to this node's producers."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def prepare(self) -> None:
        """Before producers start: load persisted queue state (paused, limit)."""

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass
