"""The jobrunner command line: thin Typer commands over the client and the runner."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from jobrunner.client import Client
from jobrunner.core.apps import import_apps
from jobrunner.core.config import Settings, parse_listen, parse_queues
from jobrunner.core.errors import (
    ConfigError,
    DatabaseUnavailable,
    InvalidJob,
    JobNotFound,
    JobRunnerError,
    UnknownWorker,
)
from jobrunner.core.telemetry import configure_logging, log
from jobrunner.daemon import endpoints as _endpoints
from jobrunner.daemon.runner import Runner
from jobrunner.db import connection as _db
from jobrunner.db import migrate as _migrate

app = typer.Typer(
    name="jobrunner",
    help="Background jobs in PostgreSQL: run the daemon and steer its queues.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

T = TypeVar("T")

# Exit codes: 0 done, 1 a job or the daemon failed, 2 bad input, 130 interrupted.
BAD_INPUT_ERRORS = (ConfigError, InvalidJob, UnknownWorker, JobNotFound, ValueError)

DsnOption = Annotated[
    str | None,
    typer.Option(
        "--dsn",
        envvar="JOBRUNNER_DATABASE_URL",
        show_envvar=True,
        help="PostgreSQL URL; default: config file, else the embedded server.",
    ),
]
ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        envvar="JOBRUNNER_CONFIG",
        show_envvar=True,
        help="Config file; default: config/jobrunner.toml if present.",
    ),
]


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr and a non-zero exit: how every bad input ends."""
    typer.echo(f"error: {_db.redact(message)}", err=True)
    raise typer.Exit(code)


def run(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a command's coroutine; jobrunner errors become one line and an exit code."""
    try:
        return asyncio.run(coro_fn())
    except BAD_INPUT_ERRORS as exc:
        fail(str(exc), 2)
    except DatabaseUnavailable as exc:
        fail(str(exc), 1)
    except JobRunnerError as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


SchemaOption = Annotated[
    str | None,
    typer.Option(
        "--schema",
        envvar="JOBRUNNER_SCHEMA",
        show_envvar=True,
        help="PostgreSQL schema of jobrunner's tables (default: public).",
    ),
]

# Settings every command takes from the options given before it (`jobrunner --schema S ...`).
_global_overrides: dict[str, Any] = {}


@app.callback()
def _options(schema: SchemaOption = None) -> None:
    _global_overrides["schema"] = schema


def load_settings(config: str | None, **overrides: Any) -> Settings:
    merged = {**_global_overrides, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return Settings.load(config=config, **merged)
    except ConfigError as exc:
        fail(str(exc), 2)


@app.command()
def migrate(
    dsn: DsnOption = None,
    config: ConfigOption = None,
    schema: SchemaOption = None,
    sql: Annotated[
        bool, typer.Option("--sql", help="Print the pending migrations' SQL; change nothing.")
    ] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 if migrations are pending; change nothing.")
    ] = False,
) -> None:
    """Create or upgrade jobrunner's tables (safe to run concurrently; a no-op when current)."""
    if sql and check:
        fail("--sql and --check are alternatives; give one")
    settings = load_settings(config, database_url=dsn, schema=schema)
    configure_logging("warning", settings.log_format)  # the summary below says what was applied
    reach = _db.Reach.of(settings)

    async def go() -> int:
        url = await _db.resolve_dsn(settings.database_url, settings.data_dir)
        conn = await _db.connect(url, reach)
        try:
            if sql or check:
                return _report_pending(await _migrate.applied_versions(conn), settings, sql)
            applied = await _migrate.migrate(conn, settings.schema)
            version = await _migrate.schema_version(conn)
        finally:
            await conn.close()
        where = "" if settings.schema == "public" else f" in schema {settings.schema!r}"
        if applied:
            names = ", ".join(m.name for m in applied)
            typer.echo(f"applied {names}{where}; schema at version {version}")
        else:
            typer.echo(f"schema{where} is current (version {version})")
        return 0

    raise typer.Exit(run(go))


def _report_pending(applied: dict[int, str], settings: Settings, sql: bool) -> int:
    """--sql prints the script (nothing when current); --check says where the schema stands."""
    script = _migrate.script(applied, settings.schema)
    if sql:
        typer.echo(script, nl=False)
        return 0
    version = max(applied, default=0)
    if script:
        typer.echo(
            f"schema {settings.schema!r} is at version {version}, this jobrunner needs "
            f"{_migrate.LATEST}: run 'jobrunner migrate' (or apply 'jobrunner migrate --sql')",
            err=True,
        )
        return 1
    typer.echo(f"schema {settings.schema!r} is current (version {version})")
    return 0


# Long: Typer declares the options in the signature; the body is a dozen lines.
@app.command()
def start(
    queues: Annotated[
        str | None,
        typer.Option(
            "--queues",
            "-q",
            envvar="JOBRUNNER_QUEUES",
            help="name:limit pairs, e.g. emails:20,default:10; cluster-wide limits follow "
            "as :option=value, e.g. payments:5:global_limit=5, mail:20:rate_limit=100/60s, "
            "imports:10:global_limit=1:partition_keys=customer_id.",
        ),
    ] = None,
    app_modules: Annotated[
        list[str] | None,
        typer.Option("--app", "-a", help="Module that defines workers; repeat for several."),
    ] = None,
    dsn: DsnOption = None,
    config: ConfigOption = None,
    node: Annotated[
        str | None, typer.Option(help="This node's name (default: host-pid-random).")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
    log_job_start: Annotated[
        bool,
        typer.Option(
            "--log-job-start",
            help="Log job.start at info too (default: debug; job.stop carries the outcome).",
        ),
    ] = False,
    shutdown_grace_s: Annotated[
        float | None,
        typer.Option("--shutdown-grace-s", help="Seconds running jobs get to finish on SIGTERM."),
    ] = None,
    metrics: Annotated[
        str | None,
        typer.Option(
            "--metrics",
            metavar="HOST:PORT",
            help="Serve /metrics, /healthz and /readyz there (config: [http] listen).",
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option("--threads", help="Threads for sync workers (plain 'def'); default 10."),
    ] = None,
    web: Annotated[
        str | None,
        typer.Option(
            "--web",
            envvar="JOBRUNNER_WEB",
            help="Serve the dashboard from this process on HOST:PORT, from the one HTTP server "
            "that also answers /metrics, /healthz and /readyz (the web extra).",
        ),
    ] = None,
    schema: SchemaOption = None,
) -> None:
    """Run jobs until SIGTERM or SIGINT; a second signal interrupts running jobs at once."""
    try:
        parsed = parse_queues(queues) if queues is not None else None
    except ConfigError as exc:
        fail(str(exc), 2)
    settings = load_settings(
        config,
        database_url=dsn,
        queues=parsed,
        node=node,
        log_level=log_level,
        log_job_start=log_job_start or None,
        shutdown_grace_s=shutdown_grace_s,
        threads=threads,
        app=tuple(app_modules) if app_modules else None,
        http_listen=metrics,
        schema=schema,
    )
    try:
        configure_logging(
            settings.log_level,
            settings.log_format,
            job_start=settings.log_job_start,
            job_events=settings.log_job_events,
        )
        if web is not None:
            settings = _with_web(settings, web)
        _endpoints.check(settings, metrics_required=metrics is not None)
        dashboard = _check_web(settings.http_listen) if settings.http_web else None
    except (ValueError, ConfigError) as exc:
        fail(str(exc), 2)
    code = run(lambda: _serve(settings, dashboard))
    raise typer.Exit(code)


def _with_web(settings: Settings, listen: str) -> Settings:
    """The settings with the one HTTP server on `listen` (the dashboard beside /metrics and
    the probes); another address already given for it is refused."""
    given = settings.http_listen
    if given is not None and parse_listen(given) != parse_listen(listen):
        raise ConfigError(
            f"one HTTP server serves the dashboard, /metrics and the probes: --web {listen} "
            f"and the http listen address {given} (--metrics or [http] listen) differ"
        )
    return dataclasses.replace(settings, http_listen=listen, http_web=True)


def _check_web(listen: str | None) -> Any:
    """The dashboard's credentials (JOBRUNNER_WEB_AUTH, JOBRUNNER_WEB_TOKEN), checked."""
    from jobrunner.web import require_extra

    require_extra()
    from jobrunner.web import serve

    assert listen is not None  # Settings refuse http_web without http_listen
    checked = serve.check_address(*parse_listen(listen), None)
    if checked.warning:
        typer.echo(f"warning: {checked.warning}", err=True)
    return checked


async def _serve(settings: Settings, dashboard: Any = None) -> int:
    """Run a node until a signal, a `stop` command or a dead background task (exit 1).

    The first SIGTERM/SIGINT stops fetching and gives running jobs `shutdown_grace_s`; a
    second one interrupts them at once. Either way they go back to the queue and the exit is 0.
    """
    import_apps(settings.app)
    signalled = asyncio.Event()
    signals = 0
    runner: Runner | None = None

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        signalled.set()
        if signals > 1 and runner is not None:
            runner.interrupt()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        async with Client(settings=settings) as client:
            web_app = None if dashboard is None else dashboard.app(client)
            runner = Runner(client, settings=settings, http_app=web_app)
            try:
                await runner.start()
                if web_app is not None:
                    log.info("web.started", url=f"http://{dashboard.host}:{runner.http_port}/")
                await _first_of(signalled, runner.stop_requested, runner.failed)
            finally:
                if signals > 1:
                    runner.interrupt()
                await runner.stop(grace=runner.requested_grace_s)
            return 1 if runner.failed.is_set() else 0
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _first_of(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


def main(args: list[str] | None = None, prog_name: str = "jobrunner") -> None:
    """Entry point of the `jobrunner` script (and of `manage.py jobrunner`, which passes its
    `args`): bad usage is one `error:` line, exit 2."""
    # Typer's usage errors (an unknown option or command, a bad value) are click exceptions.
    usage_error: type[Exception] = next(
        c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
    )
    try:
        code = app(args=args, standalone_mode=False, prog_name=prog_name)
    except KeyboardInterrupt:
        sys.exit(130)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(1)
    except usage_error as exc:
        sys.exit(_usage_error(exc))
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error(exc: Exception) -> int:
    """Print a usage error as one line; return its exit code."""
    message = " ".join(str(getattr(exc, "format_message", exc.__str__)()).split())
    message = message[:1].lower() + message[1:].rstrip(".")
    code = int(getattr(exc, "exit_code", 2))
    if not message:  # no command given: the help was shown
        return code
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        message += f"; see '{ctx.command_path} --help'"
    typer.echo(f"error: {_db.redact(message)}", err=True)
    return code
