"""Run every probe from this node to every other node (and to itself), all at once.

The inputs are plain data (`DoctorInputs`) the API builds from the running daemon, so this
module knows nothing of the daemon's shape. The node's own row probes its advertised
address: a local firewall that drops the node's inbound ports drops these too, which is how
the doctor on a blocked node sees its own TCP ports (for the UDP probes the replies come
back to the blocked port, so every peer's row shows it as well).
"""

from __future__ import annotations

import asyncio
import fcntl
import ipaddress
import socket
import struct
from collections.abc import Awaitable
from dataclasses import dataclass

from shoal.doctor.model import DoctorReport, PeerReport, ProbeResult, verdict
from shoal.doctor.probes import icmp_echo, tls_handshake
from shoal.gossip.node import GossipNode

__all__ = ["DoctorInputs", "DoctorPeer", "run_doctor"]

VXLAN_DEVICE = "shoal.4096"
_SIOCGIFMTU = 0x8921


@dataclass(frozen=True)
class DoctorPeer:
    node_id: str
    hostname: str
    addr: str  # underlay address
    subnet: str = ""  # the node's task slice ("" while unknown)
    gossip: str = ""  # "ip:port" of its gossip listener
    cluster: str = ""  # "ip:port" of its 2377 listener when it is a manager
    is_self: bool = False
    down: bool = False  # the managers marked it down (known on a manager only)


@dataclass(frozen=True)
class DoctorInputs:
    node_id: str
    hostname: str
    addr: str
    peers: list[DoctorPeer]
    gossip: GossipNode | None
    tls: tuple[bytes, bytes, bytes] | None  # CA, certificate, key (PEM)
    overlay_mtu: int | None = None


def vxlan_mtu(device: str = VXLAN_DEVICE) -> int | None:
    """This node's overlay MTU (its VXLAN device's), None when it has no overlay yet.

    Asked with SIOCGIFMTU of this network namespace: /sys may be another namespace's."""
    request = struct.pack("16sH14x", device.encode(), 0)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            reply = fcntl.ioctl(sock.fileno(), _SIOCGIFMTU, request)
    except OSError:
        return None
    return int(struct.unpack("16sH14x", reply)[1])


def _na(port: str, why: str) -> Awaitable[ProbeResult]:
    async def done() -> ProbeResult:
        return ProbeResult(port, "n/a", None, why)
    return done()


async def _tls(inputs: DoctorInputs, peer: DoctorPeer, timeout: float) -> ProbeResult:
    assert inputs.tls is not None
    seconds, detail = await tls_handshake(peer.cluster, *inputs.tls, timeout=timeout)
    return verdict("2377/tcp", seconds, detail)


async def _gossip_udp(gossip: GossipNode, peer: DoctorPeer, timeout: float) -> ProbeResult:
    loop = asyncio.get_running_loop()
    start = loop.time()
    ok = await gossip.ping(peer.node_id, peer.gossip, timeout)
    return verdict("7946/udp", loop.time() - start if ok else None, "" if ok else "no ack")


async def _gossip_tcp(gossip: GossipNode, peer: DoctorPeer, timeout: float) -> ProbeResult:
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        async with asyncio.timeout(timeout):
            ok = await gossip.exchange(peer.gossip)
    except TimeoutError:
        ok = False
    return verdict("7946/tcp", loop.time() - start if ok else None,
                   "" if ok else "no push-pull answer")


async def _vxlan(peer: DoctorPeer, timeout: float, size: int, port: str) -> ProbeResult:
    target = str(ipaddress.IPv4Network(peer.subnet).network_address)
    seconds, detail = await icmp_echo(target, timeout, ip_size=size, dont_fragment=size > 84)
    if port == "mtu" and seconds is None:
        detail = f"a {size}-byte packet did not cross ({detail})"
    result = verdict(port, seconds, detail)
    if port == "mtu" and seconds is not None:
        return ProbeResult(port, result.state, seconds, f"{size} bytes")
    return result


async def _peer_row(inputs: DoctorInputs, peer: DoctorPeer, timeout: float) -> PeerReport:
    probes: list[Awaitable[ProbeResult]] = []
    if peer.cluster and inputs.tls is not None:
        probes.append(_tls(inputs, peer, timeout))
    else:
        probes.append(_na("2377/tcp", "not a manager"))
    if inputs.gossip is not None and peer.gossip:
        probes.append(_gossip_tcp(inputs.gossip, peer, timeout))
        probes.append(_gossip_udp(inputs.gossip, peer, timeout))
    else:
        probes.append(_na("7946/tcp", "gossip address unknown"))
        probes.append(_na("7946/udp", "gossip address unknown"))
    if peer.is_self or not peer.subnet or inputs.overlay_mtu is None:
        why = "this node" if peer.is_self else "no overlay yet"
        probes += [_na("4789/udp", why), _na("mtu", why)]
    else:
        probes.append(_vxlan(peer, timeout, 84, "4789/udp"))
        probes.append(_vxlan(peer, timeout, inputs.overlay_mtu, "mtu"))
    results = list(await asyncio.gather(*probes))
    vx = next(r for r in results if r.port == "4789/udp")
    if vx.state == "blocked":  # the MTU cannot be told apart from a closed overlay
        results = [ProbeResult("mtu", "n/a", None, "overlay blocked") if r.port == "mtu" else r
                   for r in results]
    name = f"{peer.hostname} (this node)" if peer.is_self else peer.hostname
    return PeerReport(peer.node_id, name, peer.addr, results, down=peer.down)


async def run_doctor(inputs: DoctorInputs, timeout: float = 2.0) -> DoctorReport:
    """Probe every peer of `inputs` on every cluster port; never raises for a failed probe."""
    peers = sorted(inputs.peers, key=lambda p: (not p.is_self, p.hostname, p.addr))
    rows = await asyncio.gather(*(_peer_row(inputs, p, timeout) for p in peers))
    return DoctorReport(inputs.node_id, inputs.hostname, inputs.addr, list(rows))
