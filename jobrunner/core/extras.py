"""Optional dependencies: importing one that is not installed names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from jobrunner.core.errors import MissingExtra


def require(module: str, extra: str) -> ModuleType:
    """Import `module`, or raise MissingExtra saying `pip install 'jobrunner[extra]'`."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(
            f"{module!r} is not installed; it comes with pip install 'jobrunner[{extra}]'"
        ) from exc
