"""The service networks' kernel plan (pure): bridges, task links, /32 routes, VIPs, isolation."""

from __future__ import annotations

import ipaddress

from shoal.agent.svcnet.plan import nft_script, plan, vip_flushes
from shoal.gossip.endpoints import EndpointEntry, NetworkAddress, PublishedPort

A = ipaddress.IPv4Address


def entry(task: str, node: str, net: str, addr: str, vip: str = "", ready: bool = True,
          gateway: str = "") -> EndpointEntry:
    gw = gateway or addr.rsplit(".", 1)[0] + ".1"
    return EndpointEntry("s-" + net + vip, task, node, "198.19.1.9", ready,
                         networks=(NetworkAddress(net, addr, vip, (), 24, gw),))


ENTRIES = [
    entry("client1", "n1", "netA", "198.18.1.5", "198.18.1.4"),
    entry("back1", "n1", "netA", "198.18.1.3", "198.18.1.2"),
    entry("back2", "n2", "netA", "198.18.1.6", "198.18.1.2"),
    entry("back3", "n2", "netA", "198.18.1.7", "198.18.1.2", ready=False),
    entry("other1", "n2", "netB", "198.18.2.3", "198.18.2.2"),
    entry("lonely", "n1", "netC", "198.18.3.3", "198.18.3.2", ready=False),
]
SLICES = {"n2": "198.19.2.0/24", "n3": "198.19.3.0/24"}


def test_local_tasks_get_a_bridge_per_network_and_an_interface_each() -> None:
    p = plan("n1", ENTRIES, SLICES)
    assert [(b.name, str(b.gateway)) for b in p.bridges] == [
        ("sn-netA", "198.18.1.1/24"), ("sn-netC", "198.18.3.1/24")
    ]
    assert [(x.task_id, x.name, str(x.address), str(x.gateway), x.bridge) for x in p.links] == [
        ("back1", "eth1", "198.18.1.3", "198.18.1.1", "sn-netA"),
        ("client1", "eth1", "198.18.1.5", "198.18.1.1", "sn-netA"),
        ("lonely", "eth1", "198.18.3.3", "198.18.3.1", "sn-netC"),
    ]
    assert len({x.host_name for x in p.links}) == 3


def test_remote_tasks_of_local_networks_are_routed_via_their_nodes_slice() -> None:
    p = plan("n1", ENTRIES, SLICES)
    # netB has no task on n1: no route to other1
    assert p.routes == (
        (A("198.18.1.6"), A("198.19.2.0")), (A("198.18.1.7"), A("198.19.2.0"))
    )


def test_vips_balance_over_ready_tasks_only_and_other_networks_are_dropped() -> None:
    p = plan("n1", ENTRIES, SLICES)
    assert dict(p.vips)[A("198.18.1.2")] == (A("198.18.1.3"), A("198.18.1.6"))
    script = nft_script(p)
    assert (
        "ip daddr 198.18.1.2 dnat to numgen inc mod 2 map "
        "{ 0 : 198.18.1.3, 1 : 198.18.1.6 }"
    ) in script
    assert "198.18.1.7" not in script  # not ready
    # no ready task: the draining one still serves (a starting one never: see below)
    assert "ip daddr 198.18.3.2 dnat to numgen inc mod 1 map { 0 : 198.18.3.3 }" in script
    assert "ip daddr 198.18.1.0/24 ip saddr != 198.18.1.0/24 drop" in script
    assert "198.18.2." not in script  # netB is not on this node
    assert script.startswith("table ip shoal-svcnet\ndelete table ip shoal-svcnet\n")


def test_a_node_without_attached_tasks_holds_nothing() -> None:
    p = plan("n3", ENTRIES, SLICES)
    assert p.bridges == p.links == p.routes == p.vips == ()


def test_a_vip_with_no_ready_task_falls_back_to_its_draining_ones_not_starting_ones() -> None:
    draining = entry("old", "n1", "netD", "198.18.4.3", "198.18.4.2", ready=False)
    starting = EndpointEntry("s-netD198.18.4.2", "new", "n1", "198.19.1.9", False,
                             networks=(NetworkAddress("netD", "198.18.4.4", "198.18.4.2", (), 24,
                                                      "198.18.4.1"),), starting=True)
    p = plan("n1", [draining, starting], SLICES)
    assert dict(p.vips)[A("198.18.4.2")] == (A("198.18.4.3"),)  # the mesh's rule
    ready = entry("new", "n1", "netD", "198.18.4.4", "198.18.4.2")
    p = plan("n1", [draining, ready], SLICES)
    assert dict(p.vips)[A("198.18.4.2")] == (A("198.18.4.4"),)  # never once one is ready
    p = plan("n1", [starting], SLICES)
    assert dict(p.vips)[A("198.18.4.2")] == ()  # only starting: refused, not sent to a boot
    assert "ip daddr 198.18.4.2 ct status != dnat reject" in nft_script(p)


def test_tasks_only_on_internal_networks_start_no_connection_from_their_bridge_address() -> None:
    def on(task: str, internal: bool, ports: tuple[PublishedPort, ...] = ()) -> EndpointEntry:
        return EndpointEntry("s-" + task, task, "n1", f"198.19.1.{len(task) + 10}", True,
                             ports=ports, networks=(NetworkAddress(
                                 "netI", f"198.18.5.{len(task) + 3}", "198.18.5.2", (), 24,
                                 "198.18.5.1", "inner", internal),))

    published = (PublishedPort("tcp", 8080, 80),)
    p = plan("n1", [on("in", True), on("out", False), on("pub", True, published)], SLICES)
    assert p.confined == (A("198.19.1.12"),)
    script = nft_script(p)
    assert "    ip saddr 198.19.1.12 drop" in script
    assert "type filter hook input priority -10" in script
    assert "ip saddr 198.19.1.12 ct state new drop" in script
    assert "confine" not in nft_script(plan("n1", [on("out", False)], SLICES))


def test_backends_that_leave_a_vip_lose_their_udp_and_half_open_flows() -> None:
    before = plan("n1", ENTRIES, SLICES)
    after = plan("n1", [e for e in ENTRIES if e.task_id != "back2"], SLICES)
    where = ("--orig-dst", "198.18.1.2", "--reply-src", "198.18.1.6")
    assert vip_flushes(before, after) == (
        ("-D", "-p", "udp", *where), ("-D", "-p", "tcp", "--state", "SYN_SENT", *where),
    )
    assert vip_flushes(before, before) == ()
