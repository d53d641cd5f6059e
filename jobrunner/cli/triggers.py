"""`jobrunner triggers list | run NAME | sql NAME`: the triggers the --app modules declare."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from jobrunner.cli.app import ConfigOption, DsnOption, app, fail, load_settings
from jobrunner.cli.common import AppOption, JsonOption, quiet_logs, with_client
from jobrunner.client import Client
from jobrunner.core.apps import import_apps
from jobrunner.core.config import Settings
from jobrunner.core.errors import ConfigError
from jobrunner.triggers import TriggerError, TriggerStatus, create_trigger_sql, lookup, scan
from jobrunner.triggers import registered as registered_triggers
from jobrunner.triggers import statuses as trigger_statuses

triggers_app = typer.Typer(
    help="Triggers declared on models with @trigger (their modules given by --app or config).",
    no_args_is_help=True,
)
app.add_typer(triggers_app, name="triggers")

NameArgument = Annotated[str, typer.Argument(help="The trigger's name (see 'triggers list').")]


def _settings(app_modules: list[str] | None, dsn: str | None, config: str | None) -> Settings:
    settings = load_settings(
        config, database_url=dsn, app=tuple(app_modules) if app_modules else None
    )
    try:
        import_apps(settings.app)
    except ConfigError as exc:
        fail(str(exc))
    if not registered_triggers():
        modules = ", ".join(settings.app) or "none"
        fail(f"no trigger is defined in the app modules ({modules}); give --app MODULE")
    return settings


@triggers_app.command("list")
def list_triggers(
    app_modules: AppOption = None,
    json_out: JsonOption = False,
    dsn: DsnOption = None,
    config: ConfigOption = None,
) -> None:
    """Each trigger: model, schedule, last slot, records matching now, incomplete jobs."""
    settings = _settings(app_modules, dsn, config)

    async def body(client: Client) -> list[TriggerStatus]:
        return await trigger_statuses(client, client.pool)

    found = with_client(settings, body)
    if json_out:
        typer.echo(json.dumps([s.as_json() for s in found], indent=2))
        return
    header = ("NAME", "MODEL", "QUEUE", "SCHEDULE", "LAST SLOT", "MATCHED", "INCOMPLETE")
    rows = [header] + [
        (
            s.name,
            s.model,
            s.queue,
            s.schedule or "on demand",
            "-" if s.last_slot is None else s.last_slot.isoformat(timespec="seconds"),
            "-" if s.matched is None else str(s.matched),
            str(s.incomplete),
        )
        for s in found
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@triggers_app.command("run")
def run_trigger(
    name: NameArgument,
    app_modules: AppOption = None,
    json_out: JsonOption = False,
    dsn: DsnOption = None,
    config: ConfigOption = None,
) -> None:
    """One scan now: enqueue a job for each record matching the trigger's where (a record
    with an incomplete job keeps it)."""
    settings = _settings(app_modules, dsn, config)
    try:
        found = lookup(name)
    except TriggerError as exc:
        fail(str(exc))
    if not found.adapter.has_where:
        fail(f"trigger {name!r} has no where to scan for; enqueue it with new_for(record)")

    async def body(client: Client) -> dict[str, object]:
        result = await scan(client, found)
        return {"trigger": name, "matched": result.matched, "inserted": result.inserted}

    outcome = with_client(settings, body)
    if json_out:
        typer.echo(json.dumps(outcome))
    else:
        typer.echo(
            f"{name}: {outcome['matched']} records match, {outcome['inserted']} jobs inserted "
            f"(the others already had an incomplete job)"
        )


@triggers_app.command("sql")
def trigger_sql(
    name: NameArgument,
    app_modules: AppOption = None,
    config: ConfigOption = None,
) -> None:
    """Print a CREATE TRIGGER that enqueues the trigger's job from PostgreSQL itself, for
    every row written so that it matches where (run it with psql or in a migration)."""
    quiet_logs()
    _settings(app_modules, None, config)
    try:
        typer.echo(create_trigger_sql(lookup(name)), nl=False)
    except TriggerError as exc:
        fail(str(exc))
