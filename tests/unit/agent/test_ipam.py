"""SubnetAllocator against a naive model: next-fit, never the reserved addresses."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.agent.ipam import PoolExhausted, SubnetAllocator
from shoal.errors import InvalidArgument

NET = ipaddress.IPv4Network("198.19.1.0/24")
GW = ipaddress.IPv4Address("198.19.1.1")


def test_first_addresses_skip_network_and_gateway() -> None:
    alloc = SubnetAllocator(NET, [GW])
    assert str(alloc.allocate()) == "198.19.1.2/24"
    assert str(alloc.allocate()) == "198.19.1.3/24"


def test_released_address_is_not_reused_until_the_pool_wraps() -> None:
    alloc = SubnetAllocator(ipaddress.IPv4Network("198.19.1.0/29"))  # hosts .2-.6
    first = alloc.allocate()
    alloc.release(first.ip)
    got = [alloc.allocate().ip for _ in range(4)]
    assert first.ip not in got
    assert alloc.allocate().ip == first.ip  # the pool wrapped: only .2 is left
    with pytest.raises(PoolExhausted, match="all 5 are in use"):
        alloc.allocate()


def test_reserved_addresses_are_skipped_and_checked() -> None:
    alloc = SubnetAllocator(NET, [GW, ipaddress.IPv4Address("198.19.1.2")])
    alloc.reserve(ipaddress.IPv4Address("198.19.1.3"))
    assert str(alloc.allocate()) == "198.19.1.4/24"
    with pytest.raises(InvalidArgument):
        alloc.reserve(ipaddress.IPv4Address("198.19.2.3"))
    alloc.release(ipaddress.IPv4Address("10.0.0.1"))  # unknown: nothing happens


def test_tiny_subnets_have_no_task_addresses() -> None:
    for prefix in (30, 31, 32):
        alloc = SubnetAllocator(ipaddress.IPv4Network(f"198.19.1.0/{prefix}"))
        if prefix == 30:
            assert str(alloc.allocate()) == "198.19.1.2/30"
        with pytest.raises(PoolExhausted):
            alloc.allocate()


class Model:
    """Naive next-fit over an explicit list."""

    def __init__(self, net: ipaddress.IPv4Network, reserved: set[int]) -> None:
        self.hosts = [int(a) for a in net.hosts()][1:]  # minus the gateway
        self.used = set(reserved)
        self.cursor = 0

    def allocate(self) -> int | None:
        n = len(self.hosts)
        for step in range(n):
            i = (self.cursor + step) % n
            if self.hosts[i] not in self.used:
                self.used.add(self.hosts[i])
                self.cursor = (i + 1) % n
                return self.hosts[i]
        return None


ops = st.lists(st.tuples(st.sampled_from(["alloc", "release"]), st.integers(0, 40)), max_size=80)


@settings(max_examples=300, deadline=None)
@given(prefix=st.integers(26, 30), reserved=st.sets(st.integers(0, 20), max_size=5), script=ops)
def test_matches_the_naive_model(
    prefix: int, reserved: set[int], script: list[tuple[str, int]]
) -> None:
    net = ipaddress.IPv4Network(f"198.19.1.0/{prefix}")
    base = int(net.network_address)
    res = {base + r for r in reserved if base + r <= int(net.broadcast_address)}
    alloc = SubnetAllocator(net, [ipaddress.IPv4Address(a) for a in res])
    model = Model(net, res)
    held: list[int] = []
    for op, n in script:
        if op == "alloc":
            want = model.allocate()
            if want is None:
                with pytest.raises(PoolExhausted):
                    alloc.allocate()
                continue
            got = alloc.allocate()
            assert int(got.ip) == want
            assert got.network == net
            assert got.ip not in (net.network_address, net.broadcast_address, net[1])
            assert int(got.ip) not in res
            held.append(want)
        elif held:
            addr = held.pop(n % len(held))
            alloc.release(ipaddress.IPv4Address(addr))
            model.used.discard(addr)
    assert {int(a) for a in alloc.in_use()} == {a for a in model.used if a in model.hosts}
