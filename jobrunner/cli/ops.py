"""Operator commands: pause, resume, scale, stop, drain and status (registered by cli.py)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from jobrunner.cli.app import ConfigOption, DsnOption, app, fail, load_settings
from jobrunner.cli.common import (
    AppOption,
    ForceOption,
    JsonOption,
    NodeOption,
    TimeoutOption,
    with_client,
)
from jobrunner.client import Client
from jobrunner.core.apps import import_apps
from jobrunner.core.config import Settings
from jobrunner.core.errors import ConfigError
from jobrunner.core.limits import RateLimit
from jobrunner.ops import commands as _commands
from jobrunner.ops import draining as _draining
from jobrunner.ops import status as _status
from jobrunner.ops.commands import ControlResult


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def report(result: ControlResult, done: str, timeout_s: float) -> None:
    """Say what was done and by whom; exit 1 naming the nodes that did not apply it."""
    where = f"on node {result.node!r}" if result.node else "on every node"
    if result.persisted:
        where += " (persisted: nodes that start later follow it)"
    elif result.node and result.queue:
        where += " (not persisted: nodes that start later do not follow it)"
    if not result.targets:
        who = "no live node serves it" if result.queue else "no live node"
        typer.echo(f"{done} {where}; {who}, nothing to wait for")
        return
    typer.echo(f"{done} {where}")
    applied = [n for n in result.targets if n in result.applied]
    if applied:
        typer.echo(f"applied by {_plural(len(applied), 'node')}: {', '.join(applied)}")
    if result.missing:
        fail(
            f"not applied within {timeout_s:g}s by {_plural(len(result.missing), 'node')}: "
            f"{', '.join(result.missing)}; check them with 'jobrunner status'",
            1,
        )


@app.command()
def pause(
    queue: str,
    node: NodeOption = None,
    timeout: TimeoutOption = 5.0,
    force: ForceOption = False,
    dsn: DsnOption = None,
    config: ConfigOption = None,
) -> None:
    """Stop starting jobs of QUEUE; running jobs finish. Persisted unless --node is given."""
    settings = load_settings(config, database_url=dsn)
    result = with_client(
        settings, lambda c: c.pause_queue(queue, node, timeout_s=timeout, force=force)
    )
    report(result, f"paused queue {queue!r}", timeout)


@app.command()
def resume(
    queue: str,
    node: NodeOption = None,
    timeout: TimeoutOption = 5.0,
    force: ForceOption = False,
    dsn: DsnOption = None,
    config: ConfigOption = None,
) -> None:
    """Start running jobs of QUEUE again. Persisted unless --node is given."""
    settings = load_settings(config, database_url=dsn)
    result = with_client(
        settings, lambda c: c.resume_queue(queue, node, timeout_s=timeout, force=force)
    )
    report(result, f"resumed queue {queue!r}", timeout)


@app.command()
def scale(
    queue: str,
    limit: Annotated[
        str | None, typer.Argument(help="Jobs at once per node, >= 1.", show_default=False)
    ] = None,
    reset: Annotated[
        bool,
        typer.Option(
            "--reset",
            help="Back to the limit each node was started with; forget the persisted one.",
        ),
    ] = False,
    global_limit: Annotated[
        str | None,
        typer.Option(
            "--global",
            help="Jobs at once across every node (per partition), >= 1; persisted.",
            show_default=False,
        ),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option(
            "--rate",
            metavar="N/PERIOD",
            help="Jobs started across every node per period (e.g. 100/60s); persisted, it "
            "wins over the nodes' rate_limit. --rate reset: back to their configured one.",
            show_default=False,
        ),
    ] = None,
    node: NodeOption = None,
    timeout: TimeoutOption = 5.0,
    force: ForceOption = False,
    dsn: DsnOption = None,
    config: ConfigOption = None,
) -> None:
    """Run up to LIMIT jobs of QUEUE at once per node (running jobs are never cut short),
    or at most N across every node with --global N, or change its rate with --rate."""
    if rate is not None:
        if limit is not None or reset or global_limit is not None or node is not None:
            fail("--rate takes no LIMIT, --reset, --global or --node")
        _scale_rate(queue, rate, timeout, force, load_settings(config, database_url=dsn))
        return
    if global_limit is not None:
        if reset:
            fail("give --global N or --reset, not both")
        _scale_global(queue, limit, global_limit, node, timeout, force, dsn, config)
        return
    if reset == (limit is not None):
        fail("give a LIMIT or --reset, not both" if reset else "give a LIMIT (or --reset)")
    number: int | None = None
    if limit is not None:
        try:
            number = int(limit)
        except ValueError:
            fail(f"queue limit must be a whole number >= 1, got {limit!r}")
    settings = load_settings(config, database_url=dsn)
    result = with_client(
        settings, lambda c: c.scale_queue(queue, number, node, timeout_s=timeout, force=force)
    )
    if number is None:
        report(result, f"queue {queue!r} back to each node's own limit", timeout)
    else:
        report(result, f"scaled queue {queue!r} to {number} per node", timeout)


def _scale_global(
    queue: str,
    limit: str | None,
    raw: str | None,
    node: str | None,
    timeout: float,
    force: bool,
    dsn: str | None,
    config: str | None,
) -> None:
    if limit is not None:
        fail("give a LIMIT or --global N, not both")
    if node is not None:
        fail("--global is cluster-wide: it takes no --node")
    try:
        number = int(raw or "")
    except ValueError:
        fail(f"queue {queue!r} global_limit must be a whole number >= 1, got {raw!r}")
    if number < 1:
        fail(f"queue {queue!r} global_limit must be a whole number >= 1, got {number}")
    settings = load_settings(config, database_url=dsn)
    result = with_client(
        settings, lambda c: c.scale_global(queue, number, timeout_s=timeout, force=force)
    )
    report(result, f"queue {queue!r} runs at most {number} at once across every node", timeout)


def _scale_rate(queue: str, raw: str, timeout: float, force: bool, settings: Settings) -> None:
    rate: RateLimit | None = None
    if raw != "reset":
        try:
            rate = RateLimit.parse(raw)
        except ConfigError as exc:
            fail(f"queue {queue!r} {exc}")

    async def go(client: Client) -> ControlResult:
        return await _commands.scale_rate(client, queue, rate, timeout_s=timeout, force=force)

    result = with_client(settings, go)
    if rate is None:
        report(result, f"queue {queue!r} back to each node's configured rate limit", timeout)
    else:
        done = f"queue {queue!r} starts at most {rate.allowed} every {rate.period_s:g}s"
        report(result, done, timeout)


@app.command()
def stop(
    node: NodeOption = None,
    grace: Annotated[
        float | None,
        typer.Option(
            "--grace",
            min=0,
            help="Seconds running jobs get to finish (default: the node's "
            "shutdown_grace_s); what is left goes back to the queue.",
        ),
    ] = None,
    timeout: TimeoutOption = 5.0,
    dsn: DsnOption = None,
    config: ConfigOption = None,
) -> None:
    """Stop a node (or every node) gracefully, as SIGTERM does."""
    settings = load_settings(config, database_url=dsn)
    result = with_client(settings, lambda c: c.stop_node(node, grace_s=grace, timeout_s=timeout))
    grace_text = "the node's shutdown_grace_s" if grace is None else f"{grace:g}s"
    report(result, f"stopping gracefully (running jobs get {grace_text})", timeout)


@app.command()
def status(
    json_out: JsonOption = False,
    node: Annotated[
        str | None, typer.Option("--node", help="Only this node (with --check: is it live).")
    ] = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="With --node: exit 1 unless its heartbeat is fresh."),
    ] = False,
    dsn: DsnOption = None,
    config: ConfigOption = None,
) -> None:
    """Nodes (heartbeat, leader, queues) and queues (limit, paused, running, jobs by state)."""
    if check and node is None:
        fail("--check needs --node NAME (the node to check)", 2)
    settings = load_settings(config, database_url=dsn)
    found = with_client(settings, lambda c: c.status())
    if node is not None:
        _node_status(found, node, json_out=json_out, check=check)
        return
    if json_out:
        typer.echo(json.dumps(found.to_json(), indent=2))
    else:
        typer.echo(_status.render(found))


def _node_status(found: _status.Status, name: str, *, json_out: bool, check: bool) -> None:
    """One node's line (or JSON); with `check`, exit 1 when its lease has run out."""
    row = next((n for n in found.nodes if n.name == name), None)
    if row is None:
        live = ", ".join(n.name for n in found.nodes if n.live) or "none"
        fail(f"no node named {name!r} (live nodes: {live})", 1 if check else 2)
    if json_out:
        typer.echo(json.dumps(_status.node_json(row), indent=2))
    else:
        typer.echo(_status.render_node(found, row))
    if check and not row.live:
        fail(f"node {name!r} is stale: its heartbeat lease expired", 1)


@app.command()
def drain(
    queues: Annotated[
        list[str] | None,
        typer.Argument(
            help="Queues to drain; default: every queue with waiting jobs or a known worker."
        ),
    ] = None,
    with_scheduled: Annotated[
        bool,
        typer.Option(
            "--with-scheduled",
            help="Run scheduled and retryable jobs now too; failed jobs are "
            "retried until they succeed or run out of attempts.",
        ),
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", min=0, help="Give up after this many seconds (exit 2); 0: never."
        ),
    ] = 300.0,
    app_modules: AppOption = None,
    force: ForceOption = False,
    json_out: JsonOption = False,
    dsn: DsnOption = None,
    config: ConfigOption = None,
) -> None:
    """Run every waiting job of the queues, on live nodes or here; exit 1 if any failed."""
    settings = load_settings(
        config, database_url=dsn, app=tuple(app_modules) if app_modules else None
    )

    async def body(client: Client) -> _draining.DrainReport:
        import_apps(settings.app)
        try:
            return await client.drain(
                queues or None,
                with_scheduled=with_scheduled,
                timeout_s=timeout or None,
                force=force,
            )
        except _draining.DrainTimeout as exc:
            fail(str(exc), 2)

    result = with_client(settings, body)
    _drain_summary(result, json_out)


def _drain_summary(result: _draining.DrainReport, json_out: bool) -> None:
    if json_out:
        typer.echo(
            json.dumps(
                {
                    **result.counts(),
                    "ok": result.ok,
                    "by_nodes": {q: list(n) for q, n in result.by_nodes.items()},
                    "here": list(result.here),
                },
                indent=2,
            )
        )
    else:
        parts = [f"{q!r} through {', '.join(n)}" for q, n in sorted(result.by_nodes.items())]
        if result.here:
            parts.append(f"{', '.join(repr(q) for q in result.here)} in this process")
        typer.echo(f"drained {'; '.join(parts)}" if parts else "nothing to drain: no queue")
        typer.echo(", ".join(f"{k} {v}" for k, v in result.counts().items()))
    if result.failed:
        fail(
            f"{_plural(result.failed, 'job')} failed; see 'jobrunner jobs list --state discarded'",
            1,
        )
    if not result.ok:
        fail(
            f"{_plural(result.retried, 'job')} failed and will be retried later; see "
            "'jobrunner jobs list --state retryable', or drain --with-scheduled",
            1,
        )
