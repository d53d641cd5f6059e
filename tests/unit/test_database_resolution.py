"""Where the database URL comes from: flag/argument, then JOBRUNNER_DATABASE_URL, then the
config file, else the embedded server; and no password in what is shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobrunner import ConfigError, Settings
from jobrunner.db import connection as _db


def write_config(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path


def test_nothing_configured_means_embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.load(env={})
    assert settings.database_url is None
    assert settings.data_dir == ".jobrunner"


def test_config_file_then_env_then_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_config(
        tmp_path / "config" / "jobrunner.toml",
        'database_url = "postgresql://file/db"\ndata_dir = "/var/lib/jr"\n',
    )
    assert Settings.load(env={}).database_url == "postgresql://file/db"
    assert Settings.load(env={}).data_dir == "/var/lib/jr"
    env = {"JOBRUNNER_DATABASE_URL": "postgresql://env/db"}
    assert Settings.load(env=env).database_url == "postgresql://env/db"
    assert (
        Settings.load(env=env, database_url="postgresql://flag/db").database_url
        == "postgresql://flag/db"
    )
    assert Settings.load(env=env, database_url=None).database_url == "postgresql://env/db"


def test_config_named_by_flag_or_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_config(
        tmp_path / "config" / "jobrunner.toml", 'database_url = "postgresql://default/x"\n'
    )
    other = write_config(tmp_path / "other.toml", 'database_url = "postgresql://other/x"\n')
    named = write_config(tmp_path / "named.toml", 'database_url = "postgresql://named/x"\n')
    assert (
        Settings.load(env={"JOBRUNNER_CONFIG": str(other)}).database_url == "postgresql://other/x"
    )
    assert (
        Settings.load(config=named, env={"JOBRUNNER_CONFIG": str(other)}).database_url
        == "postgresql://named/x"
    )


def test_missing_or_broken_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"config file '/nowhere/jr\.toml' not found"):
        Settings.load(config="/nowhere/jr.toml", env={})
    broken = write_config(tmp_path / "broken.toml", "database_url = \n")
    with pytest.raises(ConfigError, match="cannot read config file"):
        Settings.load(config=broken, env={})
    unknown = write_config(tmp_path / "unknown.toml", 'databse_url = "postgresql://x/y"\n')
    with pytest.raises(ConfigError, match="unknown setting 'databse_url'"):
        Settings.load(config=unknown, env={})


async def test_a_given_url_is_used_as_it_is(tmp_path: Path) -> None:
    url = "postgresql://user:pw@db.example:6543/app?sslmode=require"
    assert await _db.resolve_dsn(url, tmp_path) == url


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://app:s3cret@db:5432/app", "postgresql://app:***@db:5432/app"),
        ("postgres://app:p%40ss@db/app", "postgres://app:***@db/app"),
        ("postgresql://app@db/app", "postgresql://app@db/app"),
        ("host=db user=app password=s3cret dbname=app", "host=db user=app password=*** dbname=app"),
        ("host=db password='s3 cret' dbname=app", "host=db password=*** dbname=app"),
        (
            "cannot connect to 'postgresql://a:b@h/d': refused",
            "cannot connect to 'postgresql://a:***@h/d': refused",
        ),
    ],
)
def test_redact_hides_passwords(text: str, shown: str) -> None:
    assert _db.redact(text) == shown
