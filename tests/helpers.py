"""Test helpers: poll to a deadline, and run the daemon as a user would (a subprocess)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from jobrunner.core.schema import qualify

ROOT = Path(__file__).resolve().parent.parent
NO_CONFIG = ROOT / "tests" / "apps" / "no_config.toml"
T = TypeVar("T")

# Tiny intervals so that time-based behaviour shows within a test's deadline.
FAST_ENV = {
    "JOBRUNNER_LOG_FORMAT": "json",
    "JOBRUNNER_HEARTBEAT_INTERVAL_S": "0.5",
    "JOBRUNNER_NODE_LEASE_S": "3",
    "JOBRUNNER_LEADER_LEASE_S": "2",
    "JOBRUNNER_STAGE_INTERVAL_S": "0.1",
    "JOBRUNNER_RESCUE_INTERVAL_S": "0.5",
    "JOBRUNNER_CRON_INTERVAL_S": "0.2",
    "JOBRUNNER_CONTROL_POLL_INTERVAL_S": "0.5",
    "JOBRUNNER_SHUTDOWN_GRACE_S": "10",
}


async def eventually(
    check: Callable[[], Awaitable[T]], timeout_s: float = 10.0, interval_s: float = 0.02
) -> T:
    """Await `check()` until it returns something other than False/None without an
    AssertionError, or fail with its last error once `timeout_s` has passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        error: AssertionError | None = None
        try:
            result = await check()
            if result is not False and result is not None:
                return result
        except AssertionError as exc:
            error = exc
        if loop.time() > deadline:
            raise error or AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(interval_s)


class Daemon:
    """`jobrunner start` in a subprocess, logging JSON to a file we can read."""

    def __init__(
        self,
        dsn: str,
        *,
        queues: str = "default:10",
        app: Sequence[str] = ("tests.apps.sample",),
        node: str | None = None,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        schema: str | None = None,
    ) -> None:
        self.dsn = dsn
        self.schema = schema or os.environ.get("JOBRUNNER_SCHEMA", "public")
        self.node = node or f"test-{os.urandom(3).hex()}"
        self.queues = queues
        self.app = list(app)
        self.args = list(args)
        # Not the example config/jobrunner.toml of the working directory: only what is given.
        self.env = {**os.environ, **FAST_ENV, "JOBRUNNER_CONFIG": str(NO_CONFIG), **(env or {})}
        if self.schema != "public":
            self.env["JOBRUNNER_SCHEMA"] = self.schema
        self.log_path = Path(tempfile.mkstemp(prefix="jobrunner-daemon-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "jobrunner",
            "start",
            "--dsn",
            self.dsn,
            "--queues",
            self.queues,
            "--node",
            self.node,
        ]
        for module in self.app:
            cmd += ["--app", module]
        return cmd + self.args

    def start(self) -> Daemon:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        return self

    async def wait_ready(self, timeout_s: float = 20.0) -> Daemon:
        """Until the node row exists (the daemon registered and started its producers)."""
        # No statement cache: the dsn may be a transaction pooler's.
        conn = await asyncpg.connect(self.dsn, statement_cache_size=0)
        try:

            async def registered() -> bool:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.output()}")
                row = await conn.fetchval(
                    qualify("SELECT 1 FROM jobrunner_nodes WHERE name = $1", self.schema),
                    self.node,
                )
                return bool(row) and "node.started" in self.output()

            await eventually(registered, timeout_s)
        finally:
            await conn.close()
        return self

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """kill -9: no cleanup at all."""
        self.signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(10)

    async def wait(self, timeout_s: float = 30.0) -> int:
        """The exit code, polling to a deadline."""
        assert self.proc is not None
        proc = self.proc

        async def exited() -> bool:
            return proc.poll() is not None

        await eventually(exited, timeout_s, interval_s=0.05)
        assert proc.returncode is not None
        return proc.returncode

    async def stop(self, timeout_s: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.signal(signal.SIGTERM)
        try:
            return await self.wait(timeout_s)
        except AssertionError:
            self.kill()
            raise

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The daemon's JSON log lines (optionally one event name)."""
        found = []
        for line in self.output().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and (name is None or entry.get("event") == name):
                found.append(entry)
        return found


def run_cli(
    *args: str, dsn: str | None = None, env: dict[str, str] | None = None, timeout_s: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """`jobrunner ARGS` in a subprocess, as a user types it."""
    full_env = {**os.environ, **FAST_ENV, **(env or {})}
    full_env.pop("JOBRUNNER_CONFIG", None)
    if dsn is not None:
        full_env["JOBRUNNER_DATABASE_URL"] = dsn
    return subprocess.run(
        [sys.executable, "-m", "jobrunner", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
