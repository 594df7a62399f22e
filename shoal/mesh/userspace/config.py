"""PURE part of the userspace mesh: which listeners a `MeshState` asks for, the round-robin
pool behind each, and the service label that turns PROXY protocol v2 on.

No I/O, clock or randomness. The port selection is the kernel planner's own
(`plan.plan_ports`), so both data planes open the same ports over the same backends: every
ingress port, balanced over every node's ready endpoints; a host-mode port only where a
ready local endpoint exists; one owner per protocol/port.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shoal.mesh.model import MeshState
from shoal.mesh.plan import plan_ports

__all__ = [
    "PROXY_PROTOCOL_LABEL",
    "Backend",
    "ListenerSpec",
    "Pool",
    "listener_specs",
    "proxy_protocol_ports",
]

# service label: published ports that get a PROXY v2 header, e.g. "8080" or "8080/tcp,53/udp"
PROXY_PROTOCOL_LABEL = "shoal.mesh.proxy-protocol"

Key = tuple[str, int]  # (protocol, published port)
Backend = tuple[str, int]  # (task address, target port)


@dataclass(frozen=True)
class ListenerSpec:
    """One port this node listens on. `backends` empty: connections/datagrams are refused."""

    protocol: str
    published: int
    target: int
    service_id: str
    backends: tuple[str, ...]
    proxy_protocol: bool

    @property
    def key(self) -> Key:
        return (self.protocol, self.published)


def listener_specs(state: MeshState) -> tuple[dict[Key, ListenerSpec], tuple[str, ...]]:
    """The listeners `state` asks for, by (protocol, port), and the inputs that were skipped."""
    ports, problems = plan_ports(state)
    proxied = {(p.protocol, p.published, p.service_id)
               for p in state.ports if p.proxy_protocol}
    specs = {
        p.key: ListenerSpec(p.protocol, p.published, p.target, p.service_id, p.backends,
                            (p.protocol, p.published, p.service_id) in proxied)
        for p in ports
    }
    return specs, problems


class Pool:
    """The ready backends of one listener, chosen in turn (like the kernel's `numgen inc`).

    Mutated in place by `update` when the endpoints change, so connections being set up
    see the new set at once: a backend that left is never picked again after `update`.
    """

    def __init__(self, target: int, backends: tuple[str, ...]) -> None:
        self.target = target
        self.backends = backends
        self._members = frozenset(backends)
        self._next = 0

    def update(self, target: int, backends: tuple[str, ...]) -> None:
        self.target, self.backends, self._members = target, backends, frozenset(backends)

    def __contains__(self, backend: object) -> bool:
        return (isinstance(backend, tuple) and len(backend) == 2
                and backend[1] == self.target and backend[0] in self._members)

    def __len__(self) -> int:
        return len(self.backends)

    def pick(self, exclude: frozenset[Backend] | set[Backend] = frozenset()) -> Backend | None:
        """The next backend in turn that is not in `exclude`, or None."""
        count = len(self.backends)
        for _ in range(count):
            addr = self.backends[self._next % count]
            self._next = (self._next + 1) % count
            if (addr, self.target) not in exclude:
                return (addr, self.target)
        return None


def proxy_protocol_ports(labels: Mapping[str, str] | None) -> tuple[set[Key], list[str]]:
    """Ports named by the `shoal.mesh.proxy-protocol` label of a service, and bad items.

    "8080" names tcp and udp 8080; "8080/tcp" or "53/udp" one of them; items are separated
    by commas or spaces. Bad items are returned (for the caller to report), not raised: a
    label must never stop the mesh from being programmed.
    """
    value = (labels or {}).get(PROXY_PROTOCOL_LABEL, "")
    ports: set[Key] = set()
    bad: list[str] = []
    for item in value.replace(",", " ").split():
        number, _, proto = item.partition("/")
        protocols = (proto.lower(),) if proto else ("tcp", "udp")
        if not number.isdigit() or not 0 < int(number) < 65536 or \
                not set(protocols) <= {"tcp", "udp"}:
            bad.append(item)
            continue
        ports |= {(p, int(number)) for p in protocols}
    return ports, bad
