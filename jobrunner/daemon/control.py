"""The control loop: applies control commands (pause, resume, scale, drain, stop) to this node.

The control table is the source of truth; NOTIFY on `jobrunner_control` only wakes the loop,
which also polls every `control_poll_interval_s`, so a lost notification (or a pooler that
drops LISTEN) only costs latency. Each command is applied once per node and recorded in
`jobrunner_control_applied`. At start-up the node loads the persisted queue state and a
snapshot in one statement, then applies exactly the commands that snapshot did not see.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog

from jobrunner.core.limits import RateLimit
from jobrunner.db import connection as _db
from jobrunner.db import queries as _queries
from jobrunner.db.queries import ControlCommand
from jobrunner.engine.notifier import CONTROL

if TYPE_CHECKING:
    from jobrunner.engine.node import Node

log = structlog.get_logger("jobrunner.control")

PAUSE, RESUME, SCALE, DRAIN, STOP = "pause", "resume", "scale", "drain", "stop"
COMMANDS = (PAUSE, RESUME, SCALE, DRAIN, STOP)


class Controller:
    """Applies rows of jobrunner_control aimed at this node to its producers."""

    _task: asyncio.Task[None] | None = None

    def __init__(self, runner: Node) -> None:
        self._runner = runner
        self._interval_s = runner.settings.control_poll_interval_s
        self._wake = asyncio.Event()
        self._snapshot: str | None = None
        self._started_at: datetime | None = None
        self.applied: list[ControlCommand] = []

    async def prepare(self) -> None:
        """Before producers start: load the persisted queue state (paused, limit overrides).

        A queue configured `paused` starts paused unless a resume was persisted for it.
        """
        runner = self._runner
        start = await _queries.control_prepare(
            runner.client.pool, node=runner.node, queues=list(runner.producers)
        )
        self._snapshot, self._started_at = start.snapshot, start.started_at
        paused = set(start.paused)
        paused |= {q for q, c in runner.queues.items() if c.paused and q not in start.resumed}
        for name, producer in runner.producers.items():
            if name in paused:
                producer.pause()
            if name in start.limits:
                producer.scale(start.limits[name])
            if name in start.global_limits:
                producer.scale_global(start.global_limits[name])
            if name in start.rate_limits:  # set live, persisted: wins over the config's
                producer.scale_rate(start.rate_limits[name])
        if paused or start.limits or start.global_limits or start.rate_limits:
            log.info(
                "control.loaded",
                node=runner.node,
                paused=sorted(paused),
                limits=start.limits,
                rate_limits={q: r.describe() for q, r in start.rate_limits.items()},
            )
            await runner.heartbeat()

    async def start(self) -> None:
        self._runner.notifier.subscribe(CONTROL, self.wake)
        self._runner.notifier.on_reconnect(self.wake)
        self._task = asyncio.create_task(self._loop(), name="jobrunner.control")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    def wake(self, _payload: str | None = None) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._tick()
            except Exception as exc:
                log.warning("control.failed", error=_db.redact(str(exc)))
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            except TimeoutError:
                pass

    async def _tick(self) -> None:
        """Apply pending commands, publish the new queue state, then record them applied."""
        runner = self._runner
        if self._snapshot is None or self._started_at is None:
            await self.prepare()
        assert self._snapshot is not None and self._started_at is not None
        commands = await _queries.pending_control(
            runner.client.pool,
            node=runner.node,
            queues=list(runner.producers),
            snapshot=self._snapshot,
            started_at=self._started_at,
        )
        if not commands:
            return
        results = {command.id: self._apply(command) for command in commands}
        for command in commands:
            producer = runner.producers.get(command.queue or "")
            if command.command == PAUSE and producer is not None:
                # A fetch in flight gives its jobs back: the pause is confirmed only once no
                # new job of the queue can start on this node.
                await producer.settle()
        await runner.heartbeat()  # status shows the new state as soon as the command returns
        await _queries.record_control_applied(runner.client.pool, node=runner.node, results=results)
        self.applied.extend(commands)
        for command in commands:
            if command.command == STOP:
                runner.request_stop(_grace(command.payload))

    def _apply(self, command: ControlCommand) -> dict[str, Any]:
        """Apply one command to the producers; what it did, as recorded for the issuer."""
        log.info(
            "control.applying",
            id=command.id,
            command=command.command,
            queue=command.queue,
            issued_by=command.issued_by,
        )
        if command.command == STOP:
            return {"stopping": True, "grace_s": _grace(command.payload)}
        producer = self._runner.producers.get(command.queue or "")
        if producer is None or command.command not in COMMANDS:
            log.warning(
                "control.ignored", id=command.id, command=command.command, queue=command.queue
            )
            return {"ignored": True}
        if command.command == PAUSE:
            producer.pause()
        elif command.command == RESUME:
            producer.resume()
        elif command.command == SCALE and "global_limit" in command.payload:
            global_limit = command.payload["global_limit"]
            config = self._runner.queues[producer.queue].global_limit
            producer.scale_global(config if global_limit is None else int(global_limit))
            return {"paused": producer.paused, "global_limit": producer.limits.global_limit}
        elif command.command == SCALE and "rate_limit" in command.payload:
            return self._scale_rate(producer, command.payload["rate_limit"])
        elif command.command == SCALE:
            limit = command.payload.get("limit")
            producer.scale(
                self._runner.queues[producer.queue].limit if limit is None else int(limit)
            )
        else:  # DRAIN: look for jobs now rather than at the next poll
            producer.wake()
        return {"paused": producer.paused, "limit": producer.limit, "running": producer.running}

    def _scale_rate(self, producer: Any, raw: Any) -> dict[str, Any]:
        """A new rate limit for this node's claims of the queue (None: its configured one,
        if any); the queue keeps its other limits."""
        config = self._runner.queues[producer.queue].rate_limit
        rate = config if raw is None else RateLimit(int(raw["allowed"]), float(raw["period_s"]))
        producer.scale_rate(rate)
        return {"paused": producer.paused, "rate_limit": None if rate is None else rate.describe()}


def _grace(payload: dict[str, Any]) -> float | None:
    grace = payload.get("grace_s")
    return None if grace is None else float(grace)
