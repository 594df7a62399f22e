"""What the node's kernel must hold for the service networks (see package doc). Pure."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shoal.gossip.endpoints import EndpointEntry

__all__ = [
    "TABLE", "Bridge", "NetPlan", "TaskLink", "bridge_name", "nft_script", "plan", "vip_flushes",
]

TABLE = "shoal-svcnet"


@dataclass(frozen=True, order=True)
class Bridge:
    network_id: str
    name: str
    gateway: ipaddress.IPv4Interface  # the network's gateway with the subnet's prefix


@dataclass(frozen=True, order=True)
class TaskLink:
    task_id: str
    network_id: str
    bridge: str
    host_name: str  # the veth end on the bridge
    name: str  # the end in the task: eth1, eth2, ...
    address: ipaddress.IPv4Address
    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address


@dataclass(frozen=True)
class NetPlan:
    bridges: tuple[Bridge, ...] = ()
    links: tuple[TaskLink, ...] = ()
    routes: tuple[tuple[ipaddress.IPv4Address, ipaddress.IPv4Address], ...] = ()  # dst, via
    vips: tuple[tuple[ipaddress.IPv4Address, tuple[ipaddress.IPv4Address, ...]], ...] = ()
    subnets: tuple[ipaddress.IPv4Network, ...] = ()  # of the networks with local tasks
    # bridge (eth0) addresses of local tasks only on `--internal` networks: no route out
    confined: tuple[ipaddress.IPv4Address, ...] = ()


def bridge_name(network_id: str) -> str:
    return f"sn-{network_id[:11]}"


def veth_name(task_id: str, index: int) -> str:
    return f"sv{task_id[:9]}{index}"


def _local_links(node_id: str, entries: Iterable[EndpointEntry]) -> list[TaskLink]:
    links = []
    for e in entries:
        if e.node_id != node_id:
            continue
        for index, n in enumerate(e.networks, start=1):
            if not n.prefix or not n.gateway:
                continue
            subnet = ipaddress.IPv4Interface(f"{n.address}/{n.prefix}").network
            links.append(TaskLink(
                e.task_id, n.network_id, bridge_name(n.network_id), veth_name(e.task_id, index),
                f"eth{index}", ipaddress.IPv4Address(n.address), subnet,
                ipaddress.IPv4Address(n.gateway),
            ))
    return links


def plan(node_id: str, entries: list[EndpointEntry], slices: Mapping[str, str]) -> NetPlan:
    """`slices`: node ID -> its task slice on the cluster pool (the VXLAN next hop is the
    slice's network address, as the overlay routes it)."""
    links = _local_links(node_id, entries)
    local_nets = {link.network_id for link in links}
    bridges = {
        link.network_id: Bridge(
            link.network_id, link.bridge,
            ipaddress.IPv4Interface(f"{link.gateway}/{link.subnet.prefixlen}"),
        )
        for link in links
    }
    routes: dict[ipaddress.IPv4Address, ipaddress.IPv4Address] = {}
    backends: dict[ipaddress.IPv4Address, set[ipaddress.IPv4Address]] = defaultdict(set)
    draining: dict[ipaddress.IPv4Address, set[ipaddress.IPv4Address]] = defaultdict(set)
    for e in entries:
        for n in e.networks:
            if n.network_id not in local_nets:
                continue
            address = ipaddress.IPv4Address(n.address)
            if e.node_id != node_id and e.node_id in slices:
                routes[address] = ipaddress.IPv4Network(slices[e.node_id]).network_address
            if n.vip:
                vip = ipaddress.IPv4Address(n.vip)
                backends.setdefault(vip, set())
                if e.ready:
                    backends[vip].add(address)
                elif not e.starting:
                    draining[vip].add(address)
    for vip, ready in backends.items():
        if not ready:  # the mesh's terminating fallback (mesh.plan.serving_endpoints)
            ready.update(draining.get(vip, ()))
    return NetPlan(
        bridges=tuple(sorted(bridges.values())),
        links=tuple(sorted(links)),
        routes=tuple(sorted(routes.items())),
        vips=tuple(sorted((vip, tuple(sorted(b))) for vip, b in backends.items())),
        subnets=tuple(sorted({link.subnet for link in links})),
        confined=_confined(node_id, entries),
    )


def _confined(node_id: str, entries: Iterable[EndpointEntry]) -> tuple[ipaddress.IPv4Address, ...]:
    """Local tasks whose every network is `--internal` and that publish no port: Docker
    gives them no gateway, so here their node-bridge address may start no connection."""
    out = set()
    for e in entries:
        if e.node_id == node_id and e.networks and not e.ports and all(
            n.internal for n in e.networks
        ):
            try:
                out.add(ipaddress.IPv4Address(e.address))
            except ValueError:
                continue
    return tuple(sorted(out))


def nft_script(p: NetPlan) -> str:
    """One atomic transaction replacing `table ip shoal-svcnet`."""
    lines = [f"table ip {TABLE}", f"delete table ip {TABLE}", f"table ip {TABLE} {{"]
    lines.append("  chain vip {")
    lines.append("    type nat hook prerouting priority -90; policy accept;")
    for vip, backends in p.vips:
        if backends:
            targets = ", ".join(f"{i} : {b}" for i, b in enumerate(backends))
            lines.append(
                f"    ip daddr {vip} dnat to numgen inc mod {len(backends)} map {{ {targets} }}"
            )
    lines.append("  }")
    lines.append("  chain isolate {")
    lines.append("    type filter hook forward priority -10; policy accept;")
    for vip, backends in p.vips:
        if not backends:  # nobody to answer: refuse at once rather than time out
            lines.append(f"    ip daddr {vip} ct status != dnat reject")
    for subnet in p.subnets:
        lines.append(f"    ip daddr {subnet} ip saddr != {subnet} drop")
        lines.append(f"    ip saddr {subnet} ip daddr != {subnet} drop")
    for address in p.confined:
        lines.append(f"    ip saddr {address} drop")
    lines.append("  }")
    if p.confined:
        lines.append("  chain confine {")
        lines.append("    type filter hook input priority -10; policy accept;")
        for address in p.confined:
            lines.append(f"    ip saddr {address} ct state new drop")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def vip_flushes(prev: NetPlan, new: NetPlan) -> tuple[tuple[str, ...], ...]:
    """conntrack(8) argument lists for the backends that left a VIP (the mesh's rule, see
    `shoal.mesh.plan.conntrack_flushes`): its UDP flows (no end: they would follow the old
    binding while the client keeps sending) and half-open TCP connections (SYN_SENT: a
    retried SYN from the same source port would follow the entry to the dead backend).
    Established TCP connections are left to finish on the draining task."""
    now = dict(new.vips)
    out: list[tuple[str, ...]] = []
    for vip, before in prev.vips:
        for gone in sorted(set(before) - set(now.get(vip, ()))):
            where = ("--orig-dst", str(vip), "--reply-src", str(gone))
            out.append(("-D", "-p", "udp", *where))
            out.append(("-D", "-p", "tcp", "--state", "SYN_SENT", *where))
    return tuple(out)
