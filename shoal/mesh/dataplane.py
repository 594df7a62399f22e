"""The contract between the node (which knows ports and endpoints) and a mesh data plane.

Implementations: `kernel.KernelDataPlane` (nftables), `recording.RecordingDataPlane` (a fake
for tests); a userspace proxy will follow behind the same protocol.
"""

from __future__ import annotations

from typing import Protocol

from shoal.mesh.errors import MeshError
from shoal.mesh.model import MeshState

__all__ = ["DataPlane", "MeshError"]


class DataPlane(Protocol):
    """Programs the routing mesh of this node.

    `apply(state)` makes the data plane do exactly what `state` says, whatever it did before:
    it is idempotent (applying the same state again changes nothing) and atomic (traffic sees
    either the old or the new configuration, never a mix; on failure the old one stays and
    `MeshError` is raised). Calls are serialised by the implementation; the last call wins.
    `close()` removes everything the data plane made; connections already established keep
    their kernel NAT bindings until they end.
    """

    async def apply(self, state: MeshState) -> None: ...

    async def close(self) -> None: ...
