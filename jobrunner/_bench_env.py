"""The benchmark's surroundings: the machine, the versions, and its database on the server."""

from __future__ import annotations

import asyncio
import os
import platform
import socket
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from jobrunner.db import queries as _queries

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def machine() -> dict[str, Any]:
    """Cores, CPU model, memory and load: the state the figures were taken in."""
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gb": _memory_gb(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "host": socket.gethostname(),
        "os": platform.platform(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


async def versions(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        server = await conn.fetchval("SHOW server_version")
        settings = {
            name: await conn.fetchval("SELECT current_setting($1)", name)
            for name in ("fsync", "synchronous_commit", "shared_buffers", "max_connections")
        }
    finally:
        await conn.close()
    return {
        "python": platform.python_version(),
        "postgresql": server,
        "server": settings,
        "asyncpg": asyncpg.__version__,
        "structlog": _package_version("structlog"),
        "jobrunner": _package_version("jobrunner"),
    }


def _server_up(host: str = "127.0.0.1", port: int = 5432) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


async def server_dsn(given: str | None) -> str:
    """--dsn, JOBRUNNER_BENCH_DSN, the local server, else the embedded PostgreSQL."""
    dsn = given or os.environ.get("JOBRUNNER_BENCH_DSN")
    if dsn:
        return dsn
    if _server_up():
        return DEFAULT_SERVER
    from jobrunner.db.connection import embedded_dsn

    return await asyncio.to_thread(embedded_dsn, Path(".jobrunner") / "bench")


async def create_database(server: str, name: str) -> str:
    """A fresh empty database `name` on `server`; returns its DSN."""
    admin = await asyncpg.connect(server)
    try:  # the name is quoted by PostgreSQL (format %I), never pasted into SQL
        await _queries.drop_database(admin, name)
        await _queries.create_database(admin, name)
    finally:
        await admin.close()
    return urlunsplit(urlsplit(server)._replace(path=f"/{quote(name, safe='')}"))


async def drop_database(server: str, name: str) -> None:
    admin = await asyncpg.connect(server)
    try:
        await _queries.drop_database(admin, name)
    finally:
        await admin.close()
