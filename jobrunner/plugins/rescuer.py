"""Rescuer: gives jobs left executing by dead nodes back to the queue, and forgets dead nodes."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from jobrunner.core.errors import ConfigError
from jobrunner.core.job import Job
from jobrunner.db import queries as _queries
from jobrunner.engine.leader import Leadership
from jobrunner.plugins._periodic import Periodic

log = structlog.get_logger("jobrunner.rescuer")


class Rescuer(Periodic):
    """Every `interval_s`, while this node leads, rescues orphaned jobs.

    A job is orphaned when it is `executing` for a node whose lease expired, or for a node
    with no row (a process running jobs itself, like `jobrunner drain`) and it started more
    than `node_lease_s` ago. It goes back to `available` (or `discarded` with no attempts
    left) with an error entry naming the node; live nodes' jobs are never touched. Then the
    expired node rows are deleted, so status only shows live nodes. While `settled()` is
    false (this node's heartbeat failed within a node lease: the database was away for
    everyone), it waits, so that live nodes can renew their leases first.

    Example:
        >>> rescuer = Rescuer(pool, interval_s=10, node_lease_s=30)
        >>> [job.id for job in await rescuer._tick()]
        [41, 42]
    """

    name = "rescuer"
    interval_setting = "rescue_interval_s"

    def __init__(
        self,
        pool: _queries.Conn,
        *,
        interval_s: float,
        node_lease_s: float,
        leader: Leadership | None = None,
        settled: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__(interval_s=interval_s, leader=leader)
        self._settled = settled
        if not (isinstance(node_lease_s, int | float) and node_lease_s > 0):
            raise ConfigError(f"node_lease_s must be seconds > 0, got {node_lease_s!r}")
        self._pool = pool
        self.node_lease_s = node_lease_s

    async def _tick(self) -> list[Job]:
        """Rescue orphaned jobs, then remove expired nodes; the jobs rescued."""
        if not self.acting:
            return []
        if self._settled is not None and not self._settled():
            # After an outage every node's lease may have run out while it kept running its
            # jobs: give live nodes a lease's time to heartbeat before calling them dead.
            log.info("rescuer.waiting", reason="the database was unreachable within a node lease")
            return []
        rescued = await _queries.rescue_jobs(self._pool, node_lease_s=self.node_lease_s)
        for job in rescued:
            log.warning(
                "rescuer.rescued",
                job_id=job.id,
                worker=job.worker,
                queue=job.queue,
                attempt=job.attempt,
                state=str(job.state),
                node=job.attempted_by[0] if job.attempted_by else None,
            )
        removed = await _queries.remove_expired_nodes(self._pool)
        if removed:
            log.info("rescuer.nodes_removed", nodes=removed)
        return rescued
