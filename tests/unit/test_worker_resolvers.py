"""Resolvers: workers supplied for names no module registered (how Django tasks run)."""

from __future__ import annotations

import pytest

from jobrunner.core import worker as _worker
from jobrunner.core.errors import UnknownWorker


def test_a_resolver_supplies_and_the_registry_keeps_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[str] = []

    def perform(job: object) -> None:
        return None

    def resolve(name: str) -> _worker.Worker | None:
        asked.append(name)
        if name != "made.up":
            return None
        return _worker.Worker(
            name=name, target=perform, perform=perform, backoff=None, timeout_fn=None,
            queue="default", max_attempts=3, priority=0, tags=(), timeout=None, unique=None,
            sync=True,
        )  # fmt: skip

    monkeypatch.setattr(_worker, "_RESOLVERS", [])
    monkeypatch.setattr(_worker, "_REGISTRY", {})
    with pytest.raises(UnknownWorker):
        _worker.lookup("made.up")
    _worker.add_resolver(resolve)
    _worker.add_resolver(resolve)  # once only
    found = _worker.lookup("made.up")
    assert found.max_attempts == 3 and _worker.lookup("made.up") is found
    with pytest.raises(UnknownWorker, match="unknown worker 'other'"):
        _worker.lookup("other")
    assert asked == ["made.up", "other"]
