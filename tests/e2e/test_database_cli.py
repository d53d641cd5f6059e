"""`jobrunner migrate` and the database a command uses, as a user runs them: concurrent
migrations, the resolution order (--dsn, JOBRUNNER_DATABASE_URL, config file, embedded), and
one clear line for a database that cannot be used."""

from __future__ import annotations

import os
import pwd
import shutil
import site
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from jobrunner.db import embedded as _embedded
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


class RegularUser:
    """Runs Python as a regular user: this one, or `nobody` when the tests run as root (as
    root, the embedded PostgreSQL runs as its system user instead; see below), with the
    system's Python of the same version on the project and this environment's packages."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.root = os.geteuid() == 0
        self.python = sys.executable
        self.env: dict[str, str] = {}
        if self.root:
            self.python = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
            if not os.access(self.python, os.X_OK):
                pytest.skip(f"running as root, and no {self.python} to run as another user")
            paths = [str(Path(__file__).resolve().parents[2]), *site.getsitepackages()]
            self.env = {"PYTHONPATH": os.pathsep.join(paths), "HOME": str(home)}
            shutil.chown(home, "nobody", "nogroup")
        self.uid = home.stat().st_uid

    def directory(self, path: Path) -> Path:
        path.mkdir(parents=True)
        if self.root:
            for part in [path, *path.parents]:
                if part == self.home:
                    break
                shutil.chown(part, "nobody", "nogroup")
        return path

    def kwargs(self, cwd: Path, env: dict[str, str]) -> dict[str, Any]:
        return {
            "cwd": cwd,
            "env": {**env, **self.env},
            "user": "nobody" if self.root else None,
            "group": "nogroup" if self.root else None,
            "stdin": subprocess.DEVNULL,
            "text": True,
        }

    def jobrunner(self, *args: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [self.python, "-m", "jobrunner", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            **self.kwargs(cwd, env),
        )

    def python_c(
        self, script: str, cwd: Path, env: dict[str, str]
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.python, "-c", script],
            capture_output=True,
            timeout=120,
            check=False,
            **self.kwargs(cwd, env),
        )

    def stop_server(self, pgdata: Path) -> None:
        if not (pgdata / "postmaster.pid").exists():
            return
        script = (
            "import subprocess, sys; from jobrunner.db import embedded as _embedded; "
            "subprocess.run([str(_embedded._binaries() / 'pg_ctl'), '-D', sys.argv[1], "
            "'-w', 'stop', '-m', 'fast'], check=True, capture_output=True)"
        )
        subprocess.run(
            [self.python, "-c", script, str(pgdata)],
            check=True,
            timeout=60,
            capture_output=True,
            **{
                k: v for k, v in self.kwargs(pgdata.parent, dict(os.environ)).items() if k != "text"
            },
        )


@pytest.fixture
def regular_user() -> Iterator[RegularUser]:
    """A regular user's home for embedded servers; the servers started there are stopped
    after the test."""
    home = Path(tempfile.mkdtemp(prefix="jobrunner-embedded-"))
    user = RegularUser(home)
    try:
        yield user
    finally:
        for pgdata in home.rglob("pgdata"):
            user.stop_server(pgdata)
        shutil.rmtree(home, ignore_errors=True)


async def test_embedded_server_when_nothing_is_configured(regular_user: RegularUser) -> None:
    """Several jobrunner processes start or join one embedded server under .jobrunner/."""
    project = regular_user.directory(regular_user.home / "project")
    env = clean_env()
    procs = [regular_user.jobrunner("migrate", cwd=project, env=env) for _ in range(2)]
    results = [finish(p) for p in procs]
    assert [code for code, _, _ in results] == [0, 0], results
    lasts = sorted(out.strip() for _, out, _ in results)
    assert lasts[0].startswith("applied ") and lasts[1].startswith("schema is current")
    assert (project / ".jobrunner" / "pgdata" / "PG_VERSION").is_file()

    script = (
        "import asyncio, jobrunner\n"
        "from jobrunner import NewJob\n"
        "async def main():\n"
        "    async with jobrunner.connect() as client:\n"
        "        job = await client.insert(NewJob(worker='embedded.check', args={'n': 1}))\n"
        "        print(job.id, (await client.get_job(job.id)).args)\n"
        "asyncio.run(main())\n"
    )
    done = regular_user.python_c(script, cwd=project, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1 {'n': 1}"


def _socket_dir(pgdata: Path) -> Path:
    return Path((pgdata / "postmaster.pid").read_text().splitlines()[4].strip())


@pytest.mark.parametrize("depth", ["short", "long"])
def test_the_embedded_server_is_reachable_by_its_user_only(
    regular_user: RegularUser, depth: str
) -> None:
    """Local connections are trusted, so nobody else may reach the socket: the data
    directory, the socket's directory (in the data directory, or under the temporary
    directory when that path is too long for a socket) and the socket are the user's
    alone, no TCP port is open, and no directory above the data directory is opened up."""
    parts = ["p"] if depth == "short" else ["d" * 60, "e" * 40]
    project = regular_user.directory(regular_user.home.joinpath(*parts))
    above = {p: p.stat().st_mode for p in [project, *project.parents]}
    done = finish(regular_user.jobrunner("migrate", cwd=project, env=clean_env()))
    assert done[0] == 0, done

    pgdata = project / ".jobrunner" / "pgdata"
    sockets = _socket_dir(pgdata)
    assert (sockets.parent == pgdata.parent) is (depth == "short")
    for private in (pgdata, sockets, sockets / ".s.PGSQL.5432"):
        info = private.stat()
        assert info.st_uid == regular_user.uid and not info.st_mode & 0o077, private
    assert {p: p.stat().st_mode for p in above} == above
    listen = (pgdata / "postmaster.pid").read_text().splitlines()[5].strip()
    assert listen == "", "no TCP address"
    if regular_user.root:  # another user cannot even reach the socket
        probe = subprocess.run(
            [
                regular_user.python,
                "-c",
                "import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])",
                str(sockets / ".s.PGSQL.5432"),
            ],
            user="daemon",
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert probe.returncode != 0 and "PermissionError" in probe.stderr, probe.stderr


def test_as_root_the_embedded_server_runs_as_its_system_user(tmp_path: Path) -> None:
    """As root, `jobrunner migrate` with nothing configured starts the embedded server as
    the unprivileged `jobrunner-postgres`: its data and socket directories are that user's
    alone (0700) in a root-owned directory others may only pass, nothing above the project
    is opened up, no TCP port is open, root connects through the socket, another user
    cannot."""
    if os.geteuid() != 0:
        pytest.skip("only as root")
    project = tmp_path / "project"
    project.mkdir(mode=0o700)
    above = {p: p.stat().st_mode for p in [project, *project.parents]}
    pgdata = _embedded.pgdata_of(project / ".jobrunner")
    try:
        done = run("migrate", cwd=project, env=clean_env())
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("applied ")
        again = run("migrate", cwd=project, env=clean_env())
        assert again.stdout.strip() == f"schema is current (version {_migrate.LATEST})"

        service = pwd.getpwnam(_embedded.SERVICE_USER)
        sockets = _socket_dir(pgdata)
        for private in (pgdata, sockets, sockets / ".s.PGSQL.5432"):
            info = private.stat()
            assert info.st_uid == service.pw_uid and not info.st_mode & 0o077, private
        assert pgdata.stat().st_mode & 0o777 == sockets.stat().st_mode & 0o777 == 0o700
        parent = _embedded.SERVICE_DIR.stat()
        assert parent.st_uid == 0 and parent.st_mode & 0o777 == 0o711
        assert {p: p.stat().st_mode for p in above} == above
        assert (pgdata / "postmaster.pid").read_text().splitlines()[5].strip() == ""
        probe = subprocess.run(
            [
                "setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                sys.executable,
                "-c",
                "import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])",
                str(sockets / ".s.PGSQL.5432"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert probe.returncode != 0 and "PermissionError" in probe.stderr, probe.stderr
    finally:
        _embedded.remove(project / ".jobrunner")
    assert not pgdata.parent.exists()


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
