"""The cluster overlay: task subnet to task subnet across nodes over one VXLAN device.

Each node holds a slice of the cluster pool (its bridge `shoal0` carries the slice's `.1`)
and one VXLAN device (`shoal.4096`: VNI 4096, UDP `--data-path-port`, default 4789) holding
the slice's network address as a /32. For every other node it holds one route (the node's
slice via its network address, onlink), one permanent neighbour entry (that address -> the
node's VTEP MAC) and one fdb entry (that MAC -> the node's underlay address): flannel's
vxlan design, with MACs derived from subnets so that nothing but (underlay, subnet) per
node needs to be known.

`model` (PURE: peers, MAC derivation, conflict resolution), `peers` (PURE: peers from the
store's `Node` objects), `plan` (PURE: what to change,
and a strict model of the kernel), `netlink` (the pyroute2 executor, current netns only,
never the initial one), `vxlan` (`Overlay`), `driver` (JSON lines, for labs and tests).
"""

from shoal.mesh.overlay.model import ENCAP_OVERHEAD, OverlayPeer, overlay_mtu, vtep_mac
from shoal.mesh.overlay.peers import peers_from_nodes
from shoal.mesh.overlay.vxlan import Overlay, OverlayKernel

__all__ = [
    "ENCAP_OVERHEAD",
    "Overlay",
    "OverlayKernel",
    "OverlayPeer",
    "overlay_mtu",
    "peers_from_nodes",
    "vtep_mac",
]
