"""Imports the application modules that define workers (--app / config `app`)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable

from jobrunner.core.errors import ConfigError


def import_apps(modules: Iterable[str]) -> None:
    """Import each module so its @worker definitions register; the cwd is importable."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # any import-time failure of user code
            raise ConfigError(
                f"cannot import app module {name!r}: {type(exc).__name__}: {exc}"
            ) from None
