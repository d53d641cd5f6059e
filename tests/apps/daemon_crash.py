"""An app module that breaks the daemon's acker, so that one of its background tasks dies."""

from __future__ import annotations

from jobrunner.engine import acker as _acker


async def _crashing_loop(self: _acker.Acker) -> None:
    raise RuntimeError("acker crashed on purpose")


_acker.Acker._loop = _crashing_loop  # type: ignore[method-assign]
