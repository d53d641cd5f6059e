"""The benchmark end to end at the smallest sizes: the floor, an embedded daemon under a short
soak with the pruner on, and the report they make."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import server_dsn
from tests.helpers import ROOT


def test_floor_and_an_embedded_soak_report_their_figures(
    tmp_path: Path, worker_suffix: str
) -> None:
    out = tmp_path / "bench.json"
    argv = ["--quick", "--cases", "floor", "--embedded", "--soak", "3s", "--soak-interval", "1s"]
    argv += ["--soak-rate", "200", "--soak-history", "1000", "--json", str(out)]
    argv += ["--dsn", server_dsn(), "--database", f"jobrunner_bench_{worker_suffix}"]
    done = subprocess.run(
        [sys.executable, "-m", "jobrunner.bench", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text())
    results = data["results"]
    assert results["floor_c10"]["median"] > 0 and results["floor_insert_per_s"]["median"] > 0
    assert data["daemon"].startswith("`jobrunner.Runner` embedded")
    assert data["daemon_logs"]["errors"] == 0 and data["daemon_logs"]["lines"] > 0
    rows = data["soak"]
    assert [r["interval"] for r in rows] == list(range(1, len(rows) + 1)) and len(rows) >= 2
    assert all(r["jobs_per_s"] > 0 and r["table_mb"] > 0 for r in rows)
    assert results["soak_last_ratio"]["median"] > 0
    assert "soak, per interval:" in done.stdout and "of floor" in done.stdout


async def test_scale_compares_with_an_empty_table_run_by_run(
    tmp_path: Path, worker_suffix: str
) -> None:
    out = tmp_path / "bench.json"
    name = f"jobrunner_bench_scale_{worker_suffix}"
    argv = ["--quick", "--cases", "scale", "--scale-rows", "1000", "--json", str(out)]
    argv += ["--dsn", server_dsn(), "--database", name]
    done = subprocess.run(
        [sys.executable, "-m", "jobrunner.bench", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    for conc in ("c10", "c50"):
        loaded, empty = results[f"scale_{conc}"]["median"], results[f"scale_empty_{conc}"]["median"]
        assert results[f"scale_{conc}_ratio"]["median"] == pytest.approx(loaded / empty)
    conn = await asyncpg.connect(server_dsn())
    try:
        left = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1", name + "%")
    finally:
        await conn.close()
    assert left == []
