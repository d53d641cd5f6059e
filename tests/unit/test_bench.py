"""The benchmark's pure helpers: percentiles, summaries, arguments, the report."""

from __future__ import annotations

import pytest

from jobrunner import bench
from jobrunner._bench_harness import QUICK, Sizes, daemon_env, percentile
from jobrunner._bench_soak import parse_duration


def test_percentile_interpolates_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0) == 1
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 90) == pytest.approx(90.1)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 100) == 100


def test_percentile_of_one_value_is_that_value() -> None:
    assert percentile([3.5], 99) == 3.5


@pytest.mark.parametrize("p", [-1, 101])
def test_percentile_refuses_out_of_range(p: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        percentile([1.0, 2.0], p)


def test_percentile_refuses_no_values() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_summarize_gives_median_min_max_and_runs() -> None:
    found = bench.summarize([3.0, 1.0, 2.0])
    assert found == {"median": 2.0, "min": 1.0, "max": 3.0, "runs": [3.0, 1.0, 2.0]}
    assert bench.summarize([1.0, 2.0])["median"] == 1.5


def test_defaults() -> None:
    args = bench.parse_args([])
    assert args.runs == 3
    assert args.cases == bench.DEFAULT_CASES == tuple(c for c in bench.CASES if c != "soak")
    assert args.cases[0] == "floor" and not args.embedded and args.soak is None
    assert bench.sizes_for(args) == Sizes()
    assert Sizes().burn_jobs == 10_000 and Sizes().scale_rows == 1_000_000


def test_quick_means_one_run_and_small_cases() -> None:
    args = bench.parse_args(["--quick"])
    assert args.runs == 1
    assert bench.sizes_for(args) == QUICK
    assert bench.parse_args(["--quick", "--runs", "2"]).runs == 2


def test_cases_take_spaces_or_commas_and_keep_a_fixed_order() -> None:
    assert bench.parse_args(["--cases", "insert,burn-down"]).cases == ("burn-down", "insert")
    assert bench.parse_args(["--cases", "latency", "scale"]).cases == ("latency", "scale")
    assert bench.parse_args(["--cases", "insert", "--with-scale"]).cases == ("insert", "scale")
    assert bench.parse_args(["--with-scale"]).cases == bench.DEFAULT_CASES


def test_soak_takes_a_duration_and_runs_last() -> None:
    args = bench.parse_args(["--cases", "floor", "--soak", "10m", "--soak-interval", "30s"])
    assert args.cases == ("floor", "soak")
    assert (args.soak, args.soak_interval, args.soak_rate, args.soak_history) == (
        600.0,
        30.0,
        1_000.0,
        0,
    )
    assert bench.parse_args(["--soak", "1h", "--embedded"]).cases[-1] == "soak"
    assert [parse_duration(t) for t in ("90", "2.5s", "1m", "1h")] == [90, 2.5, 60, 3600]


@pytest.mark.parametrize(
    "argv",
    [["--soak", "10 minutes"], ["--soak", "0s"], ["--cases", "soak"], ["--soak-interval", "-1"]],
)
def test_bad_soak_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        bench.parse_args(argv)
    assert exited.value.code == 2
    assert "error" in capsys.readouterr().err


def test_scale_rows_and_json_path() -> None:
    args = bench.parse_args(["--scale-rows", "5000", "--json", "out.json", "--dsn", "postgres://x"])
    assert bench.sizes_for(args).scale_rows == 5000
    assert args.json_path == "out.json"
    assert args.dsn == "postgres://x"


@pytest.mark.parametrize("argv", [["--cases", "nope"], ["--runs", "0"], ["--runs", "x"]])
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        bench.parse_args(argv)
    assert exited.value.code == 2
    assert "error" in capsys.readouterr().err


def test_targets_hold_higher_or_lower_values() -> None:
    assert bench.METRICS["burn_down_c10"].meets(9_000) is True
    assert bench.METRICS["burn_down_c10"].meets(7_000) is False
    assert bench.METRICS["wake_p99_ms"].meets(2.0) is True
    assert bench.METRICS["wake_p99_ms"].meets(3.0) is False
    assert bench.METRICS["wake_max_ms"].meets(99.0) is None


def test_scale_ratio_is_median_over_median() -> None:
    results = {
        "burn_down_c10": bench.summarize([100.0, 200.0, 300.0]),
        "scale_c10": bench.summarize([150.0, 160.0, 170.0]),
    }
    bench.add_ratios(results)
    assert results["scale_c10_ratio"]["median"] == pytest.approx(0.8)
    assert "scale_c50_ratio" not in results


def test_figures_are_also_fractions_of_the_floor() -> None:
    results = {
        "floor_c10": bench.summarize([10_000.0]),
        "floor_insert_per_s": bench.summarize([2_000.0]),
        "burn_down_c10": bench.summarize([6_000.0]),
        "insert_per_s": bench.summarize([1_000.0]),
        "insert_c50_per_s": bench.summarize([9_000.0]),
    }
    bench.add_ratios(results)
    assert results["burn_down_c10_of_floor"]["median"] == pytest.approx(0.6)
    assert results["insert_of_floor"]["median"] == pytest.approx(0.5)
    assert "burn_down_c50_of_floor" not in results
    assert bench.METRICS["limits_global_c10"].floor == "floor_c10"
    assert bench.METRICS["insert_c50_per_s"].floor == "floor_insert_per_s"
    assert bench.METRICS["floor_c10"].floor is None
    assert bench.METRICS["burn_down_c10_cpu"].floor is None
    assert bench.METRICS["wake_p50_ms"].floor == "floor_wake_p50_ms"
    assert bench.METRICS["wake_max_ms"].floor is None
    text = bench.report(_data(results))
    assert "0.60x" in text and "4.50x" in text  # c10 of the floor; 50 tasks of a single insert
    assert ">= 0.550 ok" in text and "<= 0.550" not in text


def test_report_shows_the_soak_per_interval() -> None:
    row = {
        "interval": 1,
        "seconds": 60.0,
        "jobs_per_s": 1_000.0,
        "queue_p50_ms": 0.9,
        "queue_p99_ms": 2.1,
        "table_mb": 12.5,
        "live_rows": 120_000,
        "dead_rows": 3_000,
        "autovacuums": 2,
        "cpu_us_per_job": 70.0,
    }
    data = _data({}, soak=[row, {**row, "interval": 2, "jobs_per_s": 990.0}])
    lines = bench.report(data).splitlines()
    at = lines.index("soak, per interval:")
    assert lines[at + 2].split() == [
        "1",
        "1,000",
        "0.90",
        "2.10",
        "12.5",
        "120,000",
        "3,000",
        "2",
        "70",
    ]
    assert lines[at + 3].split()[:2] == ["2", "990"]
    assert "autovacuum is off" not in lines[-1]
    row["autovacuum"] = "off"
    assert "autovacuum is off on this server" in bench.report(_data({}, soak=[row]))


def _data(results: dict[str, object], soak: list[dict[str, object]] | None = None) -> dict:
    return {
        "runs": 1,
        "load_at_start": [0.5, 0.4, 0.3],
        "daemon": "subprocess",
        "machine": {"cores": 2, "cpu": "AMD EPYC", "memory_gb": 23.5, "load_avg": [1, 1, 1]},
        "versions": {
            "python": "3.11",
            "postgresql": "15",
            "asyncpg": "0.32",
            "structlog": "26",
            "jobrunner": "0.1.0",
            "server": {"fsync": "on", "synchronous_commit": "on"},
        },
        "results": results,
        "soak": soak or [],
    }


def test_fmt() -> None:
    assert bench.fmt(12345.6) == "12,346"
    assert bench.fmt(2.345) == "2.35"
    assert bench.fmt(0.0456) == "0.046"
    assert bench.fmt(float("nan")) == "n/a"


def test_daemon_runs_on_default_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBRUNNER_POLL_INTERVAL_S", "0.01")
    env = daemon_env({"JOBRUNNER_BENCH_STAMPS": "/tmp/x"})
    assert "JOBRUNNER_POLL_INTERVAL_S" not in env
    assert env["JOBRUNNER_BENCH_STAMPS"] == "/tmp/x"


def test_report_shows_machine_versions_and_targets() -> None:
    data = {
        "runs": 3,
        "load_at_start": [0.5, 0.4, 0.3],
        "daemon": "subprocess",
        "machine": {"cores": 2, "cpu": "AMD EPYC", "memory_gb": 23.5, "load_avg": [1, 1, 1]},
        "versions": {
            "python": "3.11",
            "postgresql": "15",
            "asyncpg": "0.32",
            "structlog": "26",
            "jobrunner": "0.1.0",
            "server": {"fsync": "on", "synchronous_commit": "on"},
        },
        "results": {
            "burn_down_c10": bench.summarize([7_000.0, 9_500.0, 9_200.0]),
            "wake_p99_ms": bench.summarize([3.0, 3.1, 2.9]),
        },
    }
    text = bench.report(data)
    assert "2 cores, AMD EPYC" in text and "PostgreSQL 15" in text
    assert "fsync on" in text
    assert ">= 9,000 ok" in text
    assert "<= 2.50 MISSED" in text
