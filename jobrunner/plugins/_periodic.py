"""The loop every plugin runs: one `_tick()` every `interval_s`, failures logged, never fatal."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import asyncpg
import structlog

from jobrunner.core.errors import ConfigError, DatabaseUnavailable
from jobrunner.db.connection import redact
from jobrunner.engine.leader import Leadership

log = structlog.get_logger("jobrunner.plugins")


class Periodic:
    """Runs `_tick()` every `interval_s` seconds in a task named `jobrunner.<name>`.

    A tick that raises is logged as `<name>.failed` and the loop goes on; cancellation
    propagates. With a `leader`, `_tick()` does nothing unless this node leads.
    """

    name: ClassVar[str] = "plugin"
    interval_setting: ClassVar[str] = "interval_s"
    _task: asyncio.Task[None] | None = None

    def __init__(self, *, interval_s: float, leader: Leadership | None = None) -> None:
        self._validate_interval(self.interval_setting, interval_s)
        self.interval_s = interval_s
        self._leader = leader

    @staticmethod
    def _validate_interval(setting: str, value: float) -> None:
        if not (isinstance(value, int | float) and value > 0):
            raise ConfigError(f"{setting} must be seconds > 0, got {value!r}")

    @property
    def acting(self) -> bool:
        """True when this node should do the work: it leads, or no leader is involved."""
        return self._leader is None or self._leader.is_leader

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"jobrunner.{self.name}")

    async def stop(self) -> None:
        """Cancel the loop; idempotent, and safe before start()."""
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self._tick()
            except (
                OSError,
                DatabaseUnavailable,
                asyncpg.InterfaceError,
                asyncpg.CannotConnectNowError,
            ) as exc:
                # The database is away: expected during restarts, not worth a traceback.
                log.warning(f"{self.name}.failed", error=redact(str(exc)))
            except Exception:
                log.exception(f"{self.name}.failed")
            await asyncio.sleep(self.interval_s)

    async def _tick(self) -> object:
        raise NotImplementedError
