"""Time-based loops: staging, cron, pruning and rescue of orphaned jobs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jobrunner.core import cron_sources
from jobrunner.engine import notifier as _notifier
from jobrunner.engine.leader import Leader
from jobrunner.plugins.cron import Cron, parse_all
from jobrunner.plugins.pruner import Pruner
from jobrunner.plugins.rescuer import Rescuer
from jobrunner.plugins.stager import Stager

if TYPE_CHECKING:
    from jobrunner.engine.node import Node

__all__ = ["Cron", "Pruner", "Rescuer", "Stager", "build"]

LEADER_CHANNEL = "jobrunner_leader"  # resign_leader.sql NOTIFYs it


def build(runner: Node) -> list[Any]:
    """The plugins a node runs, in start order: leader election first, then the loops.

    The stager runs on every node; cron, pruner and rescuer act only while this node leads.
    Raises ConfigError for an invalid crontab (bad expression, unknown worker or time zone).
    """
    settings, pool = runner.settings, runner.client.pool
    schedules = parse_all([*settings.crontab, *cron_sources.entries()])  # + scheduled triggers
    listen = None
    if LEADER_CHANNEL in _notifier.CHANNELS:  # else a resignation is seen at the next try

        def listen(wake: Callable[[str], None]) -> None:
            runner.notifier.subscribe(LEADER_CHANNEL, wake)

    # Leader renewal and rescue run on the node's own connections, never behind running jobs.
    leader = Leader(runner.lease, node=runner.node, lease_s=settings.leader_lease_s, listen=listen)
    runner.leader = leader
    plugins: list[Any] = [
        leader,
        Stager(pool, interval_s=settings.stage_interval_s, batch_size=settings.stage_batch_size),
        Pruner(
            pool,
            interval_s=settings.prune_interval_s,
            max_age_s=settings.prune_max_age_s,
            max_age_by_state=settings.prune_max_age_by_state,
            batch_size=settings.prune_batch_size,
            leader=leader,
        ),
        Rescuer(
            runner.lease,
            interval_s=settings.rescue_interval_s,
            node_lease_s=settings.node_lease_s,
            leader=leader,
            settled=runner.heartbeat_settled,
        ),
    ]
    if schedules:
        # Slots missed by less than this are a leader handover, not downtime: all inserted.
        grace_s = 2 * settings.leader_lease_s + 2 * settings.cron_interval_s
        plugins.append(
            Cron(
                pool,
                schedules,
                interval_s=settings.cron_interval_s,
                catch_up_s=settings.cron_catch_up_s,
                grace_s=grace_s,
                leader=leader,
            )
        )
    return plugins
