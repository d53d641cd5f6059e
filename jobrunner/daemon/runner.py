"""The daemon: owns the notifier, producers, acker and plugins, and orders start and stop."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from jobrunner.core import telemetry as _telemetry
from jobrunner.core import threads as _threads
from jobrunner.core.apps import import_apps
from jobrunner.core.config import QueueConfig, Settings, queue_config
from jobrunner.core.errors import ConfigError, JobRunnerError
from jobrunner.daemon.endpoints import Endpoints
from jobrunner.daemon.liveness import NodeLiveness
from jobrunner.db import connection as _db
from jobrunner.db import migrate as _migrate
from jobrunner.db import queries as _queries
from jobrunner.db.lease import LeaseConnections
from jobrunner.engine.acker import Acker
from jobrunner.engine.leader import Leader
from jobrunner.engine.node_lock import NodeLock
from jobrunner.engine.notifier import CANCEL, INSERT, Notifier
from jobrunner.engine.producer import Producer

if TYPE_CHECKING:
    from typing import Self

    from jobrunner.db.connection import Connected as Client

log = structlog.get_logger("jobrunner.runner")

REMOVE_NODE_TIMEOUT_S = 5.0
NODE_LOCK_WAIT_S = 5.0  # how long a start waits for a killed predecessor's session to end


class Service(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def node_name() -> str:
    """A per-process identity: host, pid and a random part (pids repeat in containers)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def _queue_configs(
    queues: Mapping[str, int | QueueConfig | Mapping[str, Any]],
) -> dict[str, QueueConfig]:
    configs = {}
    for name, value in queues.items():
        configs[name] = queue_config(name, dict(value) if isinstance(value, Mapping) else value)
    if not configs:
        raise ConfigError("no queues to run; give --queues like emails:20,default:10")
    return configs


class Runner(NodeLiveness):
    """The jobrunner daemon, embeddable in an application's own event loop.

    `failed` is set when one of its background tasks dies; `jobrunner start` then stops
    with exit code 1. An embedding application may watch it the same way. Sync workers
    (a plain `def`) run in its pool of `threads` threads (default: the `threads` setting).
    Its heartbeat and cancel checks are in `daemon.liveness`. Its HTTP endpoints serve
    `http_app` (an ASGI app: the dashboard) under every path they do not answer.

    Example:
        >>> async with jobrunner.connect(dsn) as client:
        ...     async with jobrunner.Runner(client, queues={"emails": 20}) as runner:
        ...         await stop_requested.wait()
        ...         await runner.stop(grace=30)
    """

    def __init__(
        self,
        client: Client,
        queues: Mapping[str, int | QueueConfig | Mapping[str, Any]] | None = None,
        *,
        settings: Settings | None = None,
        node: str | None = None,
        threads: int | None = None,
        http_app: Any = None,
    ) -> None:
        self.client = client
        self.http_app = http_app
        self.settings = settings or client.settings
        self.threads = _threads.ThreadPool(
            self.settings.threads if threads is None else threads,
            name="jobrunner-sync",
        )
        self.queues = _queue_configs(queues if queues is not None else self.settings.queues)
        self.node = node or self.settings.node or node_name()
        self.host = socket.gethostname()
        self.producers: dict[str, Producer] = {}
        self.failed = asyncio.Event()
        self.failure: BaseException | None = None
        self.stopped = asyncio.Event()
        self._heartbeat_failed_at: float | None = None
        self.stop_requested = asyncio.Event()
        self.requested_grace_s: float | None = None
        self._notifier: Notifier | None = None
        self._acker: Acker | None = None
        self._services: list[Any] = []
        self.leader: Leader | None = None  # set by plugins.build(); .is_leader for status
        self._heartbeat: asyncio.Task[None] | None = None
        self._node_lock: NodeLock | None = None
        self._lease: LeaseConnections | None = None
        self._cancel_checks: set[int] = set()
        self._cancel_task: asyncio.Task[None] | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._started = False
        self._stopping = False
        self._endpoints: Endpoints | None = None
        self.running = asyncio.Event()  # set once start() has started everything
        self._testing = False  # started in a testing mode: nothing runs

    @property
    def notifier(self) -> Notifier:
        assert self._notifier is not None, "the runner is not started"
        return self._notifier

    @property
    def lease(self) -> LeaseConnections:
        """The node's own connections: heartbeat, leader renewal, rescue, cancel checks."""
        assert self._lease is not None, "the runner is not started"
        return self._lease

    @property
    def acker(self) -> Acker:
        assert self._acker is not None, "the runner is not started"
        return self._acker

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def listening(self) -> bool:
        """The notifier's connection is up, or it polls (behind PgBouncer, no listen_url)."""
        return self._notifier is not None and self._notifier.listening

    @property
    def listener_connects(self) -> int:
        return self._notifier.connects if self._notifier is not None else 0

    @property
    def http_port(self) -> int | None:
        """The port the HTTP endpoints listen on (`[http] listen`), None without them."""
        server = self._endpoints.server if self._endpoints is not None else None
        return server.port if server is not None else None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Check the schema, import the settings' `app` modules, register the node, listen, then
        start plugins and producers.

        If any step fails, what already started is stopped again before the error propagates.
        """
        if self._started:
            raise JobRunnerError("this runner was already started; create a new Runner")
        _telemetry.job_log_from(self.settings)  # its log settings, whatever structlog's
        async with self.client.pool.acquire() as conn:
            await _migrate.verify(conn)
        if self.client.testing is not None:
            # As Oban's testing modes: jobs run in the test (inline, drain_queue), never here.
            self._started = self._testing = True
            log.warning(
                "node.testing",
                node=self.node,
                testing=self.client.testing,
                note="testing mode: no queue or plugin runs on this node",
            )
            self.running.set()
            return
        import_apps(self.settings.app)  # the workers its crontab names, as `jobrunner start`
        self._lease = LeaseConnections.of(self.client.dsn, self.settings)
        extensions = self._extensions()  # validates plugin settings (crontab) before anything runs
        self._started = True
        try:
            await self._start(extensions)
        except BaseException:
            await self.stop(grace=0)
            raise
        self.running.set()
        log.info(
            "node.started", node=self.node, queues={q: c.limit for q, c in self.queues.items()}
        )

    async def _start(self, extensions: list[Any]) -> None:
        pool = self.client.pool
        await self._register()
        self._notifier = Notifier(self.client.dsn, node=self.node, settings=self.settings)
        self._acker = Acker(pool, self.node)
        for name, config in self.queues.items():
            self.producers[name] = Producer(
                name,
                config,
                client=self.client,
                node=self.node,
                acker=self._acker,
                poll_interval_s=self.settings.poll_interval_s,
                threads=self.threads,
                ahead_max_age_s=self.settings.node_lease_s / 2,
                claim_ahead=self.settings.claim_ahead,
            )
        self._notifier.subscribe(INSERT, self._on_insert)
        self._notifier.subscribe(CANCEL, self._on_cancel)
        self._notifier.on_reconnect(self._wake_all)
        await self._start_service(self._notifier)  # LISTEN before the first fetch: none missed
        await self._start_service(self._acker)
        for service in extensions:
            prepare = getattr(service, "prepare", None)
            if prepare is not None:
                await prepare()
            self._services.append(service)
        for service in self._services:
            await self._start_service(service)
        for producer in self.producers.values():
            await self._start_service(producer)
        self._heartbeat = self._watch(
            asyncio.create_task(self._heartbeat_loop(), name="jobrunner.heartbeat")
        )

    async def _register(self) -> None:
        """Take the node's name, bind the endpoints, write its row and rescue what an
        earlier process of the name left."""
        # Before the node row: a live process of the same name keeps its row and its jobs.
        lock = NodeLock(self.client.dsn, self.node, self.settings)
        await lock.acquire(wait_s=min(self.settings.node_lease_s, NODE_LOCK_WAIT_S))
        self._node_lock = lock
        await self.lease.start()
        self._endpoints = Endpoints(self, mount=self.http_app)  # a port in use fails first
        await self._endpoints.start()
        await _queries.register_node(
            self.lease,
            name=self.node,
            host=self.host,
            pid=os.getpid(),
            queues=self._queue_state(),
            lease_s=self.settings.node_lease_s,
        )
        leftover = await _queries.rescue_node_jobs(self.lease, self.node)
        if leftover:
            log.warning(
                "node.rescued_leftovers",
                node=self.node,
                job_ids=leftover[:20],
                count=len(leftover),
                reason="an earlier process of this name died",
            )

    def _extensions(self) -> list[Any]:
        """Plugins (stager, cron, pruner, rescuer) and the control loop."""
        from jobrunner import plugins
        from jobrunner.daemon import control as _control

        return [_control.Controller(self), *plugins.build(self)]

    async def _start_service(self, service: Any) -> None:
        await service.start()
        task = getattr(service, "_task", None)
        if isinstance(task, asyncio.Task):
            self._watch(task)

    def _watch(self, task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        """A background task that dies stops the daemon with a failure."""

        def done(t: asyncio.Task[Any]) -> None:
            if t.cancelled() or self._stopping:
                return
            exc = t.exception()
            if exc is not None:
                log.error("node.task_failed", task=t.get_name(), error=_db.redact(repr(exc)))
                self.failure = exc
                self.failed.set()

        task.add_done_callback(done)
        return task

    async def stop(self, grace: float | None = None) -> None:
        """Stop fetching, let running jobs finish for `grace` seconds, interrupt the rest.

        Interrupted jobs go back to available, their attempt not counted. Then plugins stop,
        pending acks are written, and the node row is removed. Idempotent, safe before start().
        """
        if not self._started:
            return
        if self._testing:
            self._stopping = True
            self.stopped.set()
            return
        if self._stop_task is None:
            self._begin_stop(grace)
        elif grace is not None:
            self._hurry(grace)
        # Shielded: a caller that gives up waiting (a timeout, a cancellation) does not leave
        # the node half-stopped; the stop goes on, and calling stop() again waits for its end.
        assert self._stop_task is not None
        await asyncio.shield(self._stop_task)

    def _begin_stop(self, grace: float | None) -> None:
        """Start the one graceful stop of this node in a task of its own."""
        self._stopping = True
        grace_s = self.settings.shutdown_grace_s if grace is None else grace
        self._stop_task = asyncio.create_task(self._stop(grace_s), name="jobrunner.stop")
        self._stop_task.add_done_callback(lambda _: self.stopped.set())

    def _hurry(self, grace_s: float) -> None:
        """A later stop() with a grace: running jobs are interrupted once it has passed."""
        if grace_s <= 0:
            self.interrupt()
        else:
            asyncio.get_running_loop().call_later(grace_s, self.interrupt)

    async def _stop(self, grace_s: float) -> None:
        log.info("node.stopping", node=self.node, grace_s=grace_s)
        for producer in self.producers.values():
            producer.halt()
        await asyncio.gather(*(p.stop(grace_s) for p in self.producers.values()))
        self.threads.shutdown()  # a sync job past the grace runs on, its result ignored
        for service in reversed(self._services):
            await _quietly(service.stop())
        if self._acker is not None:
            await self._acker.stop()
        for task in (self._heartbeat, self._cancel_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._lease is not None and self._lease.open:
            if self._node_lock is not None:  # else the row is another live process's
                await _quietly(
                    asyncio.wait_for(
                        _queries.remove_node(self._lease, self.node), REMOVE_NODE_TIMEOUT_S
                    )
                )
            await self._lease.stop()
        # The endpoints last: /healthz and /readyz say "stopping" during the drain.
        await _stop_each(self._notifier, self._endpoints)
        if self._node_lock is not None:
            await self._node_lock.release()
        log.info("node.stopped", node=self.node)

    def request_stop(self, grace_s: float | None = None) -> None:
        """Stop this node as a `stop` control command does, wherever it runs.

        `stop_requested` is set and the graceful stop begins in a task of its own; `stopped`
        is set once it is over. `jobrunner start` then exits 0; an application embedding
        the runner sees the same events (its own `stop()` or `async with` exit just waits).
        """
        self.requested_grace_s = grace_s
        self.stop_requested.set()
        if not self._started or self._stopping:
            return
        if self._testing:
            self._stopping = True
            self.stopped.set()
            return
        self._begin_stop(grace_s)

    def interrupt(self) -> None:
        """Stop fetching and cancel every running job now (a second signal).

        The jobs go back to the queue; `stop()` still waits for them to be written back.
        """
        for producer in self.producers.values():
            producer.interrupt()

    def _on_insert(self, queue: str) -> None:
        producer = self.producers.get(queue)
        if producer is not None:
            producer.wake()

    def _wake_all(self) -> None:
        for producer in self.producers.values():
            producer.wake()


async def _stop_each(*services: Any) -> None:
    for service in services:
        if service is not None:
            await service.stop()


async def _quietly(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception as exc:  # TimeoutError included
        log.warning("node.stop_step_failed", error=_db.redact(str(exc)) or type(exc).__name__)
