"""Imports the application modules that define workers (--app / config `app`)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

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


def load_callable(spec: str, what: str) -> Callable[..., Any]:
    """The function named `module:function` (or `module.function`), for a config hook."""
    module_name, sep, attr = spec.strip().partition(":")
    if not sep:
        module_name, _, attr = spec.strip().rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"{what} must name a function like 'myapp.errors:report', got {spec!r}")
    import_apps([module_name])
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part, None)
    if not callable(target):
        raise ConfigError(f"{what} {spec!r} names nothing callable in module {module_name!r}")
    return target  # type: ignore[no-any-return]
