"""PURE: what the overlay should hold — peers, the local VTEP, and what each peer needs.

Every node's VTEP MAC is derived from its task subnet (`0a:58:` + the four bytes of the
subnet's network address, a locally administered unicast MAC, the way OVN derives MACs from
addresses), so no MAC ever needs to be distributed: knowing a peer's subnet and underlay
address is enough to reach it. The subnet's network address (`198.19.2.0` for
`198.19.2.0/24`) is held by that node's VXLAN device as a /32 and serves as the next hop of
the route to the subnet (flannel's scheme), so it never collides with a task or gateway.

No I/O; values only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from shoal.errors import InvalidArgument

__all__ = [
    "ENCAP_OVERHEAD",
    "DeviceSpec",
    "OverlayPeer",
    "Remote",
    "Selection",
    "overlay_mtu",
    "parse_subnet",
    "select_remotes",
    "vtep_mac",
]

# outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14)
ENCAP_OVERHEAD = 50
_MAX_PREFIX = 30  # the network address must not be a usable host of a smaller slice
_Key = tuple[int, int]  # (network address as an integer, prefix length): cheap to hash


def parse_subnet(text: str, what: str = "subnet") -> ipaddress.IPv4Network:
    """An IPv4 task slice in CIDR form with no host bits set; InvalidArgument otherwise."""
    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise InvalidArgument(f"overlay: invalid {what} {text!r}: {exc}") from exc
    if net.prefixlen > _MAX_PREFIX:
        raise InvalidArgument(f"overlay: {what} {text} is smaller than a /{_MAX_PREFIX}")
    return net


def parse_address(text: str, what: str = "underlay address") -> ipaddress.IPv4Address:
    try:
        addr = ipaddress.IPv4Address(text)
    except ValueError as exc:
        raise InvalidArgument(f"overlay: invalid {what} {text!r}: {exc}") from exc
    if addr.is_unspecified or addr.is_multicast or addr.is_loopback:
        raise InvalidArgument(f"overlay: {what} {text} cannot carry VXLAN")
    return addr


def vtep_mac(subnet: ipaddress.IPv4Network) -> str:
    """The VTEP MAC of the node holding `subnet`: `0a:58:` + its network address bytes."""
    return "0a:58:" + subnet.network_address.packed.hex(":")


def overlay_mtu(underlay_mtu: int) -> int:
    """MTU of the VXLAN device over an underlay link of `underlay_mtu`."""
    return underlay_mtu - ENCAP_OVERHEAD


@dataclass(frozen=True)
class OverlayPeer:
    """Another node as the overlay sees it. Validated on construction (InvalidArgument)."""

    node_id: str
    underlay: str  # the node's data path address, e.g. "198.18.0.12"
    subnet: str  # its task slice, e.g. "198.19.2.0/24"

    def __post_init__(self) -> None:
        parse_address(self.underlay, f"underlay address of node {self.node_id!r}")
        parse_subnet(self.subnet, f"subnet of node {self.node_id!r}")


@dataclass(frozen=True, order=True)
class Remote:
    """What one remote node needs in the kernel: route, permanent neighbour, fdb entry.

        route      subnet via <via> dev <device> onlink
        neighbour  <via> lladdr <mac> nud permanent
        fdb        <mac> dst <underlay> self permanent
    """

    subnet: ipaddress.IPv4Network
    underlay: ipaddress.IPv4Address

    @property
    def via(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address

    @property
    def mac(self) -> str:
        return vtep_mac(self.subnet)


@dataclass(frozen=True)
class DeviceSpec:
    """The local VXLAN device: its identity (changing any of it means re-creating the
    device) and its settings (changed in place)."""

    name: str
    vni: int
    port: int
    local: ipaddress.IPv4Address
    link: int  # ifindex of the underlay link holding `local`
    mac: str
    mtu: int
    address: ipaddress.IPv4Address  # the local subnet's network address, held as a /32

    @property
    def identity(self) -> tuple[str, int, int, ipaddress.IPv4Address, int]:
        return (self.name, self.vni, self.port, self.local, self.link)


@dataclass(frozen=True)
class Selection:
    """The remotes to program, keyed by subnet, and why some peers were left out."""

    remotes: dict[ipaddress.IPv4Network, Remote]
    problems: tuple[str, ...]


def select_remotes(
    local_underlay: ipaddress.IPv4Address,
    local_subnet: ipaddress.IPv4Network,
    peers: Iterable[OverlayPeer],
) -> Selection:
    """Peers -> remotes. This node's own entry is skipped; conflicting claims are resolved
    deterministically (lowest node ID wins an overlap) and reported, never raised: gossip
    and the store may briefly disagree, and one bad peer must not cut off the others."""
    chosen: dict[ipaddress.IPv4Network, Remote] = {}
    owner: dict[ipaddress.IPv4Network, str] = {}
    keys: set[_Key] = set()  # the chosen networks
    covered: set[_Key] = set()  # the chosen networks and all their supernets
    problems: list[str] = []
    for peer in sorted(peers, key=lambda p: (p.node_id, p.subnet, p.underlay)):
        subnet, underlay = parse_subnet(peer.subnet), parse_address(peer.underlay)
        if subnet == local_subnet and underlay == local_underlay:
            continue  # ourselves
        if subnet.overlaps(local_subnet):
            problems.append(
                f"node {peer.node_id} claims {subnet}, overlapping this node's {local_subnet}"
            )
            continue
        if underlay == local_underlay:
            problems.append(f"node {peer.node_id} claims this node's underlay {underlay}")
            continue
        clash = _overlap(subnet, chosen, keys, covered)
        if clash is not None:
            problems.append(
                f"node {peer.node_id} claims {subnet}, overlapping {clash} of node "
                f"{owner[clash]}; ignored"
            )
            continue
        chosen[subnet] = Remote(subnet, underlay)
        owner[subnet] = peer.node_id
        supernets = _supernets(subnet)
        keys.add(supernets[-1])
        covered.update(supernets)
    return Selection(chosen, tuple(problems))


def _supernets(net: ipaddress.IPv4Network) -> list[_Key]:
    """`net` and every network containing it, as keys."""
    addr = int(net.network_address)
    return [(addr & ~((1 << (32 - p)) - 1) & 0xFFFFFFFF, p) for p in range(net.prefixlen + 1)]


def _overlap(
    net: ipaddress.IPv4Network,
    chosen: dict[ipaddress.IPv4Network, Remote],
    keys: set[_Key],
    covered: set[_Key],
) -> ipaddress.IPv4Network | None:
    """A chosen network overlapping `net`, found in O(prefix length) lookups: it is `net`
    or one of its supernets (in `keys`), or it lies inside `net` (then `net` is in
    `covered`, the chosen ones and all their supernets)."""
    supernets = _supernets(net)
    if supernets[-1] not in covered and keys.isdisjoint(supernets):
        return None
    return next(other for other in chosen if other.overlaps(net))  # rare: a conflict
