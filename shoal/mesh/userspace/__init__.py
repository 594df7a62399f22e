"""The userspace data plane of the routing mesh (`shoal daemon --mesh userspace`): an
asyncio L4 proxy behind the same `DataPlane` protocol as the kernel one.

`config` (PURE: which listeners a `MeshState` asks for, the round-robin `Pool`, the
`shoal.mesh.proxy-protocol` service label), `tcp` (listener + relays with flow control and
half-close), `udp` (listener + flow table with idle timeout), `plane`
(`UserspaceDataPlane`: apply by difference). Same semantics as the kernel mesh: every open
port listens on all the node's addresses, round robin over the ready endpoints (all nodes'
for ingress, local ones for host mode), no ready endpoint -> refused; a removed endpoint
gets no new connection once `apply` returns. Beyond it: PROXY protocol v2 per port.
See docs/design/mesh-userspace.md.
"""

from shoal.mesh.userspace.config import (
    PROXY_PROTOCOL_LABEL,
    ListenerSpec,
    Pool,
    listener_specs,
    proxy_protocol_ports,
)
from shoal.mesh.userspace.plane import Listener, UserspaceDataPlane

__all__ = [
    "PROXY_PROTOCOL_LABEL",
    "Listener",
    "ListenerSpec",
    "Pool",
    "UserspaceDataPlane",
    "listener_specs",
    "proxy_protocol_ports",
]
