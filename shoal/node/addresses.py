"""The address a node advertises: the one given (an IPv4, with or without a port), or
the only non-loopback IPv4 address of this network namespace."""

from __future__ import annotations

import ipaddress

from shoal.errors import InvalidArgument
from shoal.rtnl import Rtnl, ipv4_addresses_blocking

__all__ = ["advertise_address", "local_addresses"]


def advertise_address(given: str) -> str:
    """docker's rule: --advertise-addr, else the one address this host has."""
    if given:
        host = given.rsplit(":", 1)[0] if given.count(":") == 1 else given
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise InvalidArgument(
                f"advertise address must be a non-zero IPv4 address, got {given!r}"
            ) from None
    candidates = local_addresses()
    if len(candidates) != 1:
        raise InvalidArgument(
            "could not choose an IP address to advertise since this system has "
            f"{'no' if not candidates else 'multiple'} addresses - specify one with "
            "--advertise-addr"
        )
    return candidates[0]


def local_addresses() -> list[str]:
    with Rtnl() as nl:
        addrs = [str(address.ip) for _, address in ipv4_addresses_blocking(nl)]
    return [a for a in addrs if not a.startswith("127.")]
