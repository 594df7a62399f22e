"""Overlay network address arithmetic (pure): default subnets, overlap, VIP/task addresses."""

from __future__ import annotations

import ipaddress

import pytest

from shoal.errors import InvalidArgument
from shoal.manager.allocator.netipam import (
    OVERLAP,
    allocate_address,
    allocate_network_subnet,
    check_overlap,
    default_gateway,
    in_use_hosts,
)


def test_default_subnets_skip_the_lab_hosts_and_the_cluster_pool() -> None:
    assert allocate_network_subnet([]) == "198.18.1.0/24"
    assert allocate_network_subnet(["198.18.1.0/24"]) == "198.18.2.0/24"
    # a user subnet that covers several /24s pushes the next default past it
    assert allocate_network_subnet(["198.18.1.0/24", "198.18.2.0/23"]) == "198.18.4.0/24"


def test_default_pool_exhausted_is_an_error() -> None:
    every = [f"198.18.{i}.0/24" for i in range(1, 256)]
    with pytest.raises(InvalidArgument, match="could not find an available"):
        allocate_network_subnet(every)


def test_overlap_uses_dockers_words_and_reserved_ranges_are_refused() -> None:
    check_overlap("198.18.8.0/24", ["198.18.1.0/24"])
    with pytest.raises(InvalidArgument) as exc:
        check_overlap("198.18.1.128/25", ["198.18.1.0/24"])
    assert str(exc.value) == OVERLAP
    for reserved in ("198.18.0.0/25", "198.19.3.0/24", "198.18.0.0/15"):
        with pytest.raises(InvalidArgument, match="reserves"):
            check_overlap(reserved, [])


def test_addresses_skip_network_gateway_broadcast_and_used() -> None:
    assert default_gateway("198.18.5.0/24") == "198.18.5.1"
    used: set[ipaddress.IPv4Address] = set()
    assert allocate_address("198.18.5.0/24", "198.18.5.1", used) == "198.18.5.2/24"
    assert allocate_address("198.18.5.0/24", "198.18.5.1", used) == "198.18.5.3/24"
    used |= in_use_hosts(["198.18.5.4/24", ""])
    assert allocate_address("198.18.5.0/24", "198.18.5.1", used) == "198.18.5.5/24"
    # a gateway elsewhere frees .1; an ip-range confines allocation
    assert allocate_address("198.18.6.0/24", "198.18.6.254", set()) == "198.18.6.1/24"
    assert allocate_address("198.18.6.0/24", "198.18.6.1", set(), "198.18.6.64/26") == (
        "198.18.6.65/24"
    )


def test_a_full_subnet_refuses_another_address() -> None:
    used: set[ipaddress.IPv4Address] = set()
    got = [allocate_address("198.18.7.0/29", "198.18.7.1", used) for _ in range(5)]
    assert got[-1] == "198.18.7.6/29"
    with pytest.raises(InvalidArgument, match="no free address"):
        allocate_address("198.18.7.0/29", "198.18.7.1", used)
