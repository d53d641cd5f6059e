"""A PgBouncer of its own for the benchmark and the tests: Debian's `pgbouncer` on a free
port, in transaction-pool mode, in front of a server.

With a small pool (fewer server connections than jobrunner opens) consecutive transactions
of one client land on different server connections, as in production: any reliance on
session state (a prepared statement, a SET, a session advisory lock) shows. No
`ignore_startup_parameters`: a client that sends server settings at connect is refused.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
SERVER_POOL_SIZE = 4  # the tests'; the benchmark gives its own


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PgBouncer:
    """Start and stop one PgBouncer in front of the server of `server_dsn` (`pool_mode`
    transaction, or session)."""

    def __init__(
        self, server_dsn: str, *, pool_size: int = SERVER_POOL_SIZE, pool_mode: str = "transaction"
    ) -> None:
        parts = urlsplit(server_dsn)
        self.pool_size = pool_size
        self.pool_mode = pool_mode
        host = parts.hostname or parse_qs(parts.query).get("host", ["127.0.0.1"])[0]
        self.user = parts.username or "postgres"
        self.server = f"host={host} port={parts.port or 5432}"
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="jrb-", dir="/tmp"))
        self.log = self.dir / "pgbouncer.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> Path:
        (self.dir / "users.txt").write_text(f'"{self.user}" ""\n')
        ini = self.dir / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = {self.server}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.dir / 'users.txt'}\n"
            f"pool_mode = {self.pool_mode}\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 1000\n"
            f"logfile = {self.log}\n"
            f"pidfile = {self.dir / 'pgbouncer.pid'}\n"
        )
        return ini

    def start(self, timeout_s: float = 20.0) -> PgBouncer:
        ini = self._write_config()
        command = [PGBOUNCER, str(ini)]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            shutil.chown(self.dir, user="nobody")  # it writes its log and pid file there
            command[1:1] = ["-u", "nobody"]
        with (self.dir / "stderr.log").open("wb") as stderr:
            self.proc = subprocess.Popen(  # noqa: S603 - the pgbouncer binary, our own config
                command, stdout=subprocess.DEVNULL, stderr=stderr, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"pgbouncer did not listen on {self.port} within {timeout_s}s")

    def dsn(self, database: str) -> str:
        return urlunsplit(
            ("postgresql", f"{self.user}@127.0.0.1:{self.port}", f"/{database}", "", "")
        )

    def output(self) -> str:
        """Its log and its stderr."""
        files = (self.log, self.dir / "stderr.log")
        return "".join(f.read_text(errors="replace") for f in files if f.exists())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)
