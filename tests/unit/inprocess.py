"""The one builder of an in-process daemon for unit tests: real `Node`, fake edges.

Tasks run in a `FakeRuntime`, the mesh is a `RecordingDataPlane`, overlays are recorded,
ports are "listening" at once (no packet leaves) and health checks answer from `health`
(default healthy). The 2377 and gossip listeners are on loopback, any free port, given
explicitly: a module-scoped fixture may build its daemon before the autouse fixture that sets
SHOAL_*_LISTEN has run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal.mesh.recording import RecordingDataPlane
from shoal.node.node import Node
from shoal.node.options import DaemonOptions
from tests.unit.fakes import FakeRuntime, RecordingOverlay

__all__ = ["FakeNodeParts", "build_daemon"]


@dataclass
class FakeNodeParts:
    daemon: Node
    runtime: FakeRuntime
    plane: RecordingDataPlane
    overlays: list[RecordingOverlay] = field(default_factory=list)
    probed: list[tuple[str, list[int]]] = field(default_factory=list)
    health: dict[str, bool] = field(default_factory=dict)  # task id (or "default") -> healthy


def build_daemon(root: Path, hostname: str = "h1", **options: Any) -> FakeNodeParts:
    """A daemon over fakes; `options` are further `DaemonOptions` fields."""
    runtime = FakeRuntime(root / "tasks")
    plane = RecordingDataPlane()
    overlays: list[RecordingOverlay] = []
    probed: list[tuple[str, list[int]]] = []
    health: dict[str, bool] = {}

    def overlay_factory(underlay: str, subnet: str, port: int) -> RecordingOverlay:
        overlays.append(RecordingOverlay(underlay, subnet, port))
        return overlays[-1]

    async def probe(address: str, ports: list[int]) -> None:
        probed.append((address, ports))  # fake tasks listen at once; no packet leaves

    async def check_health(task: Any, argv: list[str], timeout: float) -> bool:
        return health.get(task.id, health.get("default", True))

    opts = DaemonOptions(
        data_root=root, hostname=hostname, drain_delay=0,
        cluster_listen="127.0.0.1:0", gossip_listen="127.0.0.1:0", **options,
    )
    daemon = Node(
        opts,
        runtime=runtime,  # type: ignore[arg-type]
        plane_factory=lambda: plane,  # type: ignore[arg-type,return-value]
        probe=probe,
        check_health=check_health,
        overlay_factory=overlay_factory,  # type: ignore[arg-type]
    )
    return FakeNodeParts(daemon, runtime, plane, overlays, probed, health)
