"""`DaemonOptions` (dockerd's flags that shape a node) and Docker's swarm-state messages."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ALREADY_IN_SWARM", "NOT_A_MANAGER", "NOT_IN_SWARM", "DaemonOptions"]

NOT_IN_SWARM = (
    'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to '
    "connect this node to swarm and try again."
)
NOT_A_MANAGER = (
    "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster "
    "state. Please run this command on a manager node or promote the current node to a "
    "manager."
)
ALREADY_IN_SWARM = (
    'This node is already part of a swarm. Use "docker swarm leave" to leave this swarm and '
    "join another one."
)


def _allowed_registries() -> list[str] | None:
    value = os.environ.get("SHOAL_ALLOWED_REGISTRIES")
    return None if value is None else [r for r in value.split(",") if r]


@dataclass
class DaemonOptions:
    data_root: Path = Path("/var/lib/shoal")
    hosts: list[str] = field(default_factory=list)
    hostname: str | None = None
    mesh: str = "kernel"
    debug: bool = False
    drain_delay: float = 3.0  # see docs/design/rollouts.md: gossip lag on a busy node
    # where a manager listens for 2377 whatever `swarm init` asks (unit tests: loopback,
    # any port); "" follows the request's ListenAddr
    cluster_listen: str = field(
        default_factory=lambda: os.environ.get("SHOAL_CLUSTER_LISTEN", "")
    )
    # where gossip (7946/udp+tcp) listens: "" is 0.0.0.0:7946 advertised at the node's
    # address; unit tests use loopback, any port
    gossip_listen: str = field(default_factory=lambda: os.environ.get("SHOAL_GOSSIP_LISTEN", ""))
    reconcile_every: float = 10.0  # seconds between endpoint table reconciles
    insecure_registries: list[str] = field(default_factory=list)  # HOST:PORT spoken plain HTTP
    # registries this node may contact (None: any); tests set SHOAL_ALLOWED_REGISTRIES so
    # that a `service create busybox` never reaches out to docker.io
    allowed_registries: list[str] | None = field(default_factory=lambda: _allowed_registries())
    # dockerd's --metrics-addr: where /metrics and the dashboard listen ("" nowhere); the
    # listener itself is started by shoal/daemon.py (shoal/observe/server.py)
    metrics_addr: str = ""

    def manager_listen(self, requested: str = "") -> str:
        """Where a manager's 2377 listens: the daemon's override, else what was asked."""
        return self.cluster_listen or requested or "0.0.0.0:2377"
