"""`jobrunner web`: the dashboard on its own (registered by cli.py)."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated, Any

import typer

from jobrunner.cli.app import ConfigOption, DsnOption, app, fail, load_settings, run
from jobrunner.client import Client
from jobrunner.core.errors import ConfigError
from jobrunner.core.telemetry import configure_logging


@app.command()
def web(
    listen: Annotated[
        str,
        typer.Option(
            "--listen",
            envvar="JOBRUNNER_WEB_LISTEN",
            help="HOST:PORT to serve on; another host than 127.0.0.1 exposes it.",
        ),
    ] = "127.0.0.1:8080",
    auth: Annotated[
        str | None,
        typer.Option(
            "--auth",
            help="USER:PASSWORD for HTTP basic auth (or JOBRUNNER_WEB_AUTH); a bearer token "
            "may be given in JOBRUNNER_WEB_TOKEN.",
        ),
    ] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Show everything, change nothing.")
    ] = False,
    dsn: DsnOption = None,
    config: ConfigOption = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
) -> None:
    """Serve the dashboard: queues, nodes, jobs, cron, and actions on them."""
    settings = load_settings(config, database_url=dsn, log_level=log_level)
    try:
        configure_logging(settings.log_level, settings.log_format)
        prepared = prepare(listen, auth)
    except (ConfigError, ValueError) as exc:
        fail(str(exc), 2)

    async def go() -> None:
        async with Client(settings=settings) as client:
            server = prepared.server(client, read_only=read_only)
            await server.start()
            typer.echo(f"dashboard at {server.url}{' (read-only)' if read_only else ''}")
            stopping = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stopping.set)
            try:
                await stopping.wait()
            finally:
                await server.stop()

    run(go)


def prepare(listen: str, auth: str | None) -> Any:
    """Check the extra and the flags and bind the socket (see `web.serve.prepare`); a
    listener open to the network without authentication gets a warning on stderr."""
    from jobrunner.web import require_extra

    require_extra()
    from jobrunner.web import serve

    prepared = serve.prepare(listen, auth)
    if prepared.warning:
        typer.echo(f"warning: {prepared.warning}", err=True)
    return prepared
