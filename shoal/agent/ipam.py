"""Task addresses within this node's slice of the cluster pool (CNI host-local style): pure.

The network address, the gateway (the slice's first host address, held by the node bridge)
and the broadcast address are never handed out. Allocation is next-fit: it continues after
the last address handed out and wraps around, so a just-released address is reused only
once the rest of the slice is taken. Reusing it at once would let conntrack entries and
neighbour caches of the old task (here and on other nodes) misroute the new one's traffic.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from shoal.errors import InvalidArgument, ShoalError

__all__ = ["PoolExhausted", "SubnetAllocator"]


class PoolExhausted(ShoalError):
    """No free address left in the node's subnet."""

    status = 503


class SubnetAllocator:
    def __init__(
        self, subnet: ipaddress.IPv4Network, reserved: Iterable[ipaddress.IPv4Address] = ()
    ) -> None:
        self.subnet = subnet
        base = int(subnet.network_address)
        # hosts are base+2 .. broadcast-1: base is the network, base+1 the gateway
        self._first = base + 2
        self._last = int(subnet.broadcast_address) - 1
        self._used: set[int] = set()
        self._next = self._first
        for addr in reserved:
            self._used.add(self._check(addr))

    def _check(self, addr: ipaddress.IPv4Address) -> int:
        if addr not in self.subnet:
            raise InvalidArgument(f"address {addr} is not in the node subnet {self.subnet}")
        return int(addr)

    @property
    def size(self) -> int:
        """How many addresses tasks can get in this subnet."""
        return max(0, self._last - self._first + 1)

    def in_use(self) -> set[ipaddress.IPv4Address]:
        return {ipaddress.IPv4Address(a) for a in self._used if self._first <= a <= self._last}

    def allocate(self) -> ipaddress.IPv4Interface:
        prefix = self.subnet.prefixlen
        for step in range(self.size):
            cand = self._first + (self._next - self._first + step) % self.size
            if cand not in self._used:
                self._used.add(cand)
                self._next = cand + 1 if cand < self._last else self._first
                return ipaddress.IPv4Interface(f"{ipaddress.IPv4Address(cand)}/{prefix}")
        raise PoolExhausted(
            f"no free address for a task in {self.subnet}: all {self.size} are in use"
        )

    def reserve(self, addr: ipaddress.IPv4Address) -> None:
        """Mark `addr` used (a task adopted after a restart keeps its address)."""
        self._used.add(self._check(addr))

    def release(self, addr: ipaddress.IPv4Address) -> None:
        """Free `addr`; releasing an address that is not in use changes nothing."""
        self._used.discard(int(addr))
