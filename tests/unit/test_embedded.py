"""Where the embedded PostgreSQL puts its socket, and who may reach it (no server started)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jobrunner.core.errors import ConfigError
from jobrunner.db import embedded as _embedded


def test_the_socket_goes_in_the_data_directory_when_its_path_is_short(tmp_path: Path) -> None:
    sockets = _embedded.socket_dir(tmp_path)
    assert sockets == tmp_path / "run"
    assert sockets.stat().st_mode & 0o777 == 0o700


def test_a_long_data_directory_puts_the_socket_in_a_private_temporary_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    sockets = _embedded.socket_dir(deep)
    assert sockets.parent == tmp_path / "tmp" / f"jobrunner-{os.geteuid()}"
    for private in (sockets, sockets.parent):
        assert private.stat().st_mode & 0o777 == 0o700
    assert _embedded.socket_dir(deep) == sockets  # the same data directory, the same place


def test_a_socket_directory_open_to_others_is_closed_and_a_link_is_refused(
    tmp_path: Path,
) -> None:
    opened = tmp_path / "run"
    opened.mkdir(mode=0o777)
    opened.chmod(0o777)
    assert _embedded.socket_dir(tmp_path) == opened
    assert opened.stat().st_mode & 0o777 == 0o700
    other = tmp_path / "other"
    other.mkdir()
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "run").symlink_to(other)
    with pytest.raises(ConfigError, match="not a directory of this user"):
        _embedded.socket_dir(linked)


def test_root_without_a_service_user_is_refused_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As root the server runs as a system user, created when missing; when it cannot be
    created, one line says so and nothing is written."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(_embedded, "SERVICE_USER", "jobrunner-no-such-user")
    monkeypatch.setattr(_embedded, "SERVICE_DIR", tmp_path / "service")
    monkeypatch.setenv("PATH", str(tmp_path))  # no useradd
    with pytest.raises(ConfigError) as refused:
        _embedded.start(tmp_path / "data")
    message = str(refused.value)
    assert "does not run as root" in message and "'jobrunner-no-such-user'" in message
    assert "\n" not in message
    assert not (tmp_path / "data").exists() and not (tmp_path / "service").exists()


def test_as_root_the_data_lives_in_the_service_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    first = _embedded.pgdata_of(tmp_path / "a")
    assert first.parent.parent == _embedded.SERVICE_DIR and first.name == "pgdata"
    assert _embedded.pgdata_of(tmp_path / "a") == first != _embedded.pgdata_of(tmp_path / "b")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert _embedded.pgdata_of(tmp_path / "a") == tmp_path / "a" / "pgdata"
