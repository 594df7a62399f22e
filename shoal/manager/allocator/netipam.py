"""Address management of overlay networks: subnets, gateways, VIPs, task addresses. Pure.

Each user network gets one subnet: the one its spec gives, else the first free /24 of the
default pool (swarm's default-addr-pool-mask-len). The default pool for user networks is
198.18.0.0/15 minus the lab hosts' 198.18.0.0/24 and the cluster pool 198.19.0.0/16 (node
slices), so tasks' per-network addresses never collide with the nodes' bridges.

Within a subnet the network address, the broadcast address and the gateway are never
handed out; services' VIPs and tasks' addresses are taken lowest first from what is free.
Addresses are written as swarm writes them: `198.18.1.2/24` (address with prefix length).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from shoal.errors import InvalidArgument

__all__ = [
    "DEFAULT_POOL",
    "OVERLAP",
    "RESERVED",
    "SUBNET_SIZE",
    "allocate_address",
    "allocate_network_subnet",
    "check_overlap",
    "default_gateway",
    "in_use_hosts",
]

DEFAULT_POOL = "198.18.0.0/15"
RESERVED = ("198.18.0.0/24", "198.19.0.0/16")
SUBNET_SIZE = 24
# Docker's words (libnetwork's ipam), for a --subnet that overlaps another network's
OVERLAP = "Pool overlaps with other one on this address space"


def _networks(subnets: Iterable[str]) -> list[ipaddress.IPv4Network]:
    return [ipaddress.IPv4Network(s, strict=False) for s in subnets if s]


def check_overlap(subnet: str, others: Iterable[str]) -> None:
    """Refuse `subnet` when it overlaps another network's subnet or a reserved range."""
    net = ipaddress.IPv4Network(subnet, strict=False)
    for other in _networks(others):
        if net.overlaps(other):
            raise InvalidArgument(OVERLAP)
    for reserved in _networks(RESERVED):
        if net.overlaps(reserved):
            raise InvalidArgument(
                f"invalid pool request: {subnet} overlaps {reserved}, which shoal reserves "
                "(lab hosts / cluster address pool)"
            )


def allocate_network_subnet(used: Iterable[str]) -> str:
    """The first /24 of the default pool that overlaps no used subnet and no reserved range."""
    taken = _networks(used) + _networks(RESERVED)
    for candidate in ipaddress.IPv4Network(DEFAULT_POOL).subnets(new_prefix=SUBNET_SIZE):
        if not any(candidate.overlaps(t) for t in taken):
            return str(candidate)
    raise InvalidArgument(
        "rpc error: code = ResourceExhausted desc = could not find an available, "
        "non-overlapping IPv4 address pool among the defaults to assign to the network"
    )


def default_gateway(subnet: str) -> str:
    """The first host address, as libnetwork's default IPAM picks it."""
    net = ipaddress.IPv4Network(subnet, strict=False)
    return str(net.network_address + 1)


def in_use_hosts(addresses: Iterable[str]) -> set[ipaddress.IPv4Address]:
    """Host parts of `198.18.1.2/24`-style addresses (empty strings skipped)."""
    return {ipaddress.IPv4Interface(a).ip for a in addresses if a}


def allocate_address(
    subnet: str, gateway: str, used: set[ipaddress.IPv4Address], ip_range: str = ""
) -> str:
    """The lowest free host of `subnet` (inside `ip_range` when given), as `addr/prefix`;
    `used` gets the address added so one pass can allocate several."""
    net = ipaddress.IPv4Network(subnet, strict=False)
    pool = ipaddress.IPv4Network(ip_range, strict=False) if ip_range else net
    skip = {net.network_address, net.broadcast_address}
    if gateway:
        skip.add(ipaddress.IPv4Address(gateway))
    for host in pool.hosts() if pool.num_addresses > 2 else pool:
        if host not in skip and host not in used:
            used.add(host)
            return f"{host}/{net.prefixlen}"
    raise InvalidArgument(
        f"rpc error: code = ResourceExhausted desc = could not allocate an address: "
        f"subnet {subnet} has no free address left"
    )
