"""The routing mesh's data plane: published ports of services, DNAT'd to their ready tasks.

`model` (what to do: `MeshState`), `plan` (PURE: MeshState -> nftables content and atomic
`nft -f -` transactions), `dataplane` (the `DataPlane` protocol and its contract), `kernel`
(nftables in the current network namespace), `recording` (a fake for tests), `driver`
(JSON-lines front end for labs), `policy` (PURE: the service labels that choose a port's
traffic policy, health port and PROXY v2), `health` (the health ports of "local"
services). Invariant: the mesh is programmed from the endpoint table alone, so it keeps
routing while the managers have no quorum.
"""

from shoal.mesh.dataplane import DataPlane
from shoal.mesh.errors import MeshError
from shoal.mesh.model import Endpoint, MeshState, PortSpec
from shoal.mesh.recording import RecordingDataPlane

__all__ = ["DataPlane", "Endpoint", "MeshError", "MeshState", "PortSpec", "RecordingDataPlane"]
