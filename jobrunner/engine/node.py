"""What a running node offers its control loop and its plugins.

`jobrunner.Runner` is one; the control loop and the plugins take this, never the Runner, so
they depend only on the engine's parts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from jobrunner.core.config import QueueConfig, Settings
    from jobrunner.db.connection import Connected
    from jobrunner.db.lease import LeaseConnections
    from jobrunner.engine.leader import Leader
    from jobrunner.engine.notifier import Notifier
    from jobrunner.engine.producer import Producer


class Node(Protocol):
    settings: Settings
    node: str
    leader: Leader | None

    @property
    def client(self) -> Connected: ...

    @property
    def queues(self) -> dict[str, QueueConfig]: ...

    @property
    def producers(self) -> dict[str, Producer]: ...

    @property
    def notifier(self) -> Notifier: ...

    @property
    def lease(self) -> LeaseConnections:
        """The node's own connections: heartbeat, leader renewal, rescue, cancel checks."""
        ...

    async def heartbeat(self) -> None: ...

    def request_stop(self, grace_s: float | None = None) -> None: ...

    def heartbeat_settled(self) -> bool: ...
