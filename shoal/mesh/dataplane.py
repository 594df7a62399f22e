"""The contract between the node (which knows ports and endpoints) and a mesh data plane.

Implementations: `kernel.KernelDataPlane` (nftables), `userspace.UserspaceDataPlane` (a
proxy), `recording.RecordingDataPlane` (a fake for tests). A plane that can plan by the
change also has `apply_delta` (`DeltaDataPlane`; the kernel one): the caller hands it what
changed besides the whole state.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from shoal.mesh.errors import MeshError
from shoal.mesh.model import MeshDelta, MeshState

__all__ = ["DataPlane", "DeltaDataPlane", "MeshError"]


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


@runtime_checkable
class DeltaDataPlane(DataPlane, Protocol):
    """A `DataPlane` that also takes the change: `apply_delta(state, delta)` does what
    `apply(state)` does, given that only `delta.services` differ from `delta.base`, the
    state it applied last. With `delta` None, or a `base` that is not what it applied last
    (its last apply failed, it was closed), it plans `state` whole."""

    async def apply_delta(self, state: MeshState, delta: MeshDelta | None) -> None: ...
