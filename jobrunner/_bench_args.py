"""The benchmark's command line: its cases, their sizes and the soak's shape."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace

from jobrunner import _bench_soak as soak_case
from jobrunner._bench_harness import QUICK, Sizes

CASES = (
    "floor",
    "burn-down",
    "latency",
    "insert",
    "memory",
    "scale",
    "metrics",
    "bulk",
    "limits",
    "dashboard",
    "pgbouncer",
    "workflows",
    "trigger-scan",
    "soak",
)
# The scale case preloads its 1,000,000 rows in ~10 s: cheap enough. The soak runs only when
# asked for its duration (--soak).
DEFAULT_CASES = tuple(name for name in CASES if name != "soak")


def parse_args(argv: Sequence[str] | None, description: str) -> argparse.Namespace:
    """The command line; `--cases` takes names separated by spaces or commas."""
    parser = argparse.ArgumentParser(
        prog="python -m jobrunner.bench",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dsn",
        help="a server where the bench may create its database "
        "(default: JOBRUNNER_BENCH_DSN, else 127.0.0.1:5432, else embedded)",
    )
    parser.add_argument(
        "--database",
        default="jobrunner_bench",
        help="the database to create, use and drop (default: %(default)s)",
    )
    parser.add_argument(
        "--runs", type=int, default=None, help="runs per case (default 3, 1 with --quick)"
    )
    parser.add_argument("--quick", action="store_true", help="smaller cases, one run: a smoke test")
    parser.add_argument(
        "--cases",
        nargs="+",
        default=None,
        metavar="CASE",
        help=f"among {', '.join(CASES)} (default: all)",
    )
    parser.add_argument(
        "--with-scale",
        action="store_true",
        help="add the scale case to --cases (1,000,000 finished rows preloaded)",
    )
    parser.add_argument("--scale-rows", type=int, default=None, help="finished rows to preload")
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="daemons run jobrunner.Runner inside an application's process, nothing else "
        "configured, instead of `jobrunner start`",
    )
    _soak_args(parser)
    parser.add_argument(
        "--json", dest="json_path", metavar="PATH", help="also write the results here"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    args.cases = _case_names(parser, args.cases, args.with_scale)
    if args.soak is not None:
        args.cases = (*(c for c in args.cases if c != "soak"), "soak")
    elif "soak" in args.cases:
        parser.error("the soak case needs its duration: --soak 10m")
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.runs < 1:
        parser.error(f"--runs must be >= 1, got {args.runs}")
    return args


def _soak_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--soak",
        type=_duration,
        metavar="DURATION",
        help="add the soak case, this long (30s, 10m, 1h): steady inserts, the pruner on",
    )
    parser.add_argument(
        "--soak-rate", type=float, default=1_000.0, help="soak jobs/s (default %(default)g)"
    )
    parser.add_argument(
        "--soak-interval",
        type=_duration,
        default=60.0,
        metavar="DURATION",
        help="one soak report row per interval (default 60s)",
    )
    parser.add_argument(
        "--soak-history",
        type=int,
        default=0,
        metavar="ROWS",
        help="finished jobs the pruner keeps, preloaded before the soak (default 0)",
    )


def _duration(text: str) -> float:
    try:
        return soak_case.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _case_names(
    parser: argparse.ArgumentParser, raw: list[str] | None, with_scale: bool
) -> tuple[str, ...]:
    if raw is None:
        return DEFAULT_CASES
    names = [name for item in raw for name in item.split(",") if name]
    unknown = [name for name in names if name not in CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; cases are {', '.join(CASES)}")
    if with_scale and "scale" not in names:
        names.append("scale")
    return tuple(n for n in CASES if n in names)


def sizes_for(args: argparse.Namespace) -> Sizes:
    sizes = QUICK if args.quick else Sizes()
    if args.scale_rows is not None:
        sizes = replace(sizes, scale_rows=args.scale_rows)
    return sizes
