"""What the operator's command modules share: options, logging, and running with a client."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import structlog
import typer

from jobrunner.cli.app import run
from jobrunner.client import Client
from jobrunner.core.config import Settings
from jobrunner.core.telemetry import configure_job_log

T = TypeVar("T")

NodeOption = Annotated[
    str | None,
    typer.Option(
        "--node", "-n", help="Only this node (see 'jobrunner status'); default: every node."
    ),
]
TimeoutOption = Annotated[
    float,
    typer.Option("--timeout", min=0, help="Seconds to wait for the nodes to apply the command."),
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Accept a queue no node, worker or job uses yet.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
AppOption = Annotated[
    list[str] | None,
    typer.Option("--app", "-a", help="Module that defines workers; repeat for several."),
]


def quiet_logs() -> None:
    """Log warnings and errors (a failing job's) to stderr, keeping stdout for the result."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(30),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    configure_job_log("warning", job_events="structlog")


def with_client(settings: Settings, body: Callable[[Client], Awaitable[T]]) -> T:
    """Connect, run `body`, close; errors become one line and an exit code."""
    quiet_logs()

    async def go() -> T:
        async with Client(settings=settings) as client:
            return await body(client)

    return run(go)
