"""A node's liveness: its heartbeat (lease, queue state, re-registration), the runs it no
longer owns, and cancel notifications checked against the database."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import TYPE_CHECKING, Any

import structlog

from jobrunner.core.config import QueueConfig, Settings
from jobrunner.core.limits import Limits
from jobrunner.db import connection as _db
from jobrunner.db import queries as _queries
from jobrunner.engine.node_lock import NodeLock, NodeNameTaken
from jobrunner.engine.producer import Producer

if TYPE_CHECKING:
    from jobrunner.db.lease import LeaseConnections

log = structlog.get_logger("jobrunner.runner")


class NodeLiveness:
    """The part of `Runner` that keeps its node row alive and its running jobs its own."""

    node: str
    host: str
    settings: Settings
    queues: dict[str, QueueConfig]
    producers: dict[str, Producer]
    _cancel_checks: set[int]
    _cancel_task: asyncio.Task[None] | None
    _node_lock: NodeLock | None
    _heartbeat_failed_at: float | None

    if TYPE_CHECKING:

        @property
        def lease(self) -> LeaseConnections: ...

    def _on_cancel(self, payload: str) -> None:
        """A cancel notification only says where to look: anyone who can connect can NOTIFY,
        so the job is stopped once the database says it is cancelled."""
        node, _, job_id = payload.rpartition(" ")
        if node != self.node or not job_id.isdigit():
            return
        if not any(int(job_id) in p.running_jobs() for p in self.producers.values()):
            return
        self._cancel_checks.add(int(job_id))
        if self._cancel_task is None or self._cancel_task.done():
            self._cancel_task = asyncio.create_task(
                self._check_cancels(), name="jobrunner.cancel_checks"
            )

    async def _check_cancels(self) -> None:
        while self._cancel_checks:
            ids, self._cancel_checks = sorted(self._cancel_checks), set()
            try:
                cancelled = await _queries.cancelled_jobs(self.lease, ids)
            except Exception as exc:  # the heartbeat's ownership check stops them later
                log.warning("job.cancel_check_failed", job_ids=ids, error=_db.redact(str(exc)))
                continue
            for job_id in ids:
                if job_id not in cancelled:
                    log.warning(
                        "job.cancel_ignored",
                        job_id=job_id,
                        reason="a cancel notification for a job that is not cancelled",
                    )
                    continue
                for producer in self.producers.values():
                    if producer.cancel_job(job_id):
                        log.info("job.cancelling", job_id=job_id, queue=producer.queue)

    def _queue_state(self) -> str:
        state: dict[str, dict[str, Any]] = {
            name: {
                "limit": self.producers[name].limit if name in self.producers else c.limit,
                "paused": self.producers[name].paused if name in self.producers else False,
                "running": self.producers[name].running if name in self.producers else 0,
            }
            for name, c in self.queues.items()
        }
        for name, c in self.queues.items():
            producer = self.producers.get(name)
            limits = (
                producer.limits
                if producer is not None
                else Limits(c.global_limit, c.rate_limit, c.partition)
            )
            if producer is not None and producer.ahead:  # claimed ahead, waiting for a slot
                state[name]["ahead"] = producer.ahead
            if limits:  # what `jobrunner status` reports the cluster-wide use of
                state[name]["limits"] = limits.describe()
        return json.dumps(state)

    async def heartbeat(self) -> None:
        """Refresh this node's lease and queue state; re-register if its row is gone.

        On the node's own connections: jobs holding every connection of the job pool never
        make a live node look dead."""
        pool, lease_s = self.lease, self.settings.node_lease_s
        alive = await _queries.heartbeat_node(
            pool, name=self.node, queues=self._queue_state(), lease_s=lease_s
        )
        if not alive:
            await _queries.register_node(
                pool,
                name=self.node,
                host=self.host,
                pid=os.getpid(),
                queues=self._queue_state(),
                lease_s=lease_s,
            )

    async def stop_lost_jobs(self) -> list[int]:
        """Stop running jobs this node no longer owns: cancelled (a lost NOTIFY), rescued, or
        claimed again by a later run. Runs are told apart by claim, not by job id.

        Returns their ids; no ack is written for them.
        """
        running = {run for p in self.producers.values() for run in p.running_runs()}
        if not running:
            return []
        owned = await _queries.owned_jobs(self.lease, runs=list(running), node=self.node)
        lost = []
        for producer in self.producers.values():
            for run in running - owned:
                if producer.cancel_run(run):
                    log.warning(
                        "job.lost",
                        job_id=run[0],
                        queue=producer.queue,
                        reason="no longer executing on this node",
                    )
                    lost.append(run[0])
        return lost

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval_s)
            try:
                if self._node_lock is not None:
                    await self._node_lock.check()
                await self.heartbeat()
                await self.stop_lost_jobs()
            except NodeNameTaken:
                raise  # the task dies and the node stops: another process has its name
            except Exception as exc:
                self._heartbeat_failed_at = time.monotonic()
                log.warning("node.heartbeat_failed", error=_db.redact(str(exc)))

    def heartbeat_settled(self) -> bool:
        """True unless this node's heartbeat failed within the last node lease.

        A failed heartbeat means the database was away; other live nodes' leases may have
        expired meanwhile, so the rescuer waits until they have had a lease to renew them.
        """
        failed_at = self._heartbeat_failed_at
        return failed_at is None or time.monotonic() - failed_at >= self.settings.node_lease_s
