"""Slices of the cluster address pool for nodes (flannel style): pure."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from shoal.errors import InvalidArgument

__all__ = ["allocate_subnet", "validate_pool"]


def validate_pool(pools: list[str], size: int) -> list[ipaddress.IPv4Network]:
    out = []
    for pool in pools:
        try:
            net = ipaddress.IPv4Network(pool, strict=True)
        except ValueError as exc:
            raise InvalidArgument(f"invalid default address pool {pool!r}: {exc}") from None
        if not net.prefixlen < size <= 29:
            raise InvalidArgument(
                f"invalid default address pool {pool!r}: subnet size {size} must be longer "
                f"than the pool's /{net.prefixlen} and at most 29"
            )
        out.append(net)
    if not out:
        raise InvalidArgument("at least one default address pool is required")
    return out


def allocate_subnet(pools: list[str], size: int, used: Iterable[str]) -> str:
    """The first free /size slice of the pools, skipping each pool's first slice."""
    taken = {ipaddress.IPv4Network(u) for u in used if u}
    for net in validate_pool(pools, size):
        for index, sub in enumerate(net.subnets(new_prefix=size)):
            if index == 0:
                continue
            if sub not in taken:
                return str(sub)
    raise InvalidArgument("the cluster address pool is exhausted")
