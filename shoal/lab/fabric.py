"""The lab's network: a fabric namespace with a bridge, and one namespace per host.

    shoal-fabric:  fab0 (bridge, no address) with ports vh1..vhN and vclient
    shoal-hK:      lo, eth0 198.18.0.(10+K)/24   (veth peer of vhK, MAC 02:5e:c6:12:00:<last byte>)
    shoal-client:  lo, eth0 198.18.0.2/24        (veth peer of vclient)

No namespace gets a default route: 198.18.0.0/24 is all a lab host can reach, and the root
namespace is never touched (veths are born with both ends in lab namespaces). Cutting a host
takes its fabric port down, like pulling its cable at the switch; the host keeps its address.
A task namespace (`shoal-t-*`, made by a daemon) belongs to the host whose namespace holds
its veth peer; one that no lab host holds any more is found by having no process and no link
but lo.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from shoal.lab import iproute
from shoal.lab.iproute import IpError
from shoal.lab.layout import (
    CLIENT,
    FABRIC_PREFIXLEN,
    REGISTRY,
    TASK_NETNS_PREFIX,
    LabLayout,
    host_address,
)

__all__ = [
    "BRIDGE",
    "build_fabric",
    "host_mac",
    "orphan_task_netns",
    "plug",
    "stale_pins",
    "sweep",
    "task_netns_of",
    "unplug",
]

BRIDGE = "fab0"


def build_fabric(layout: LabLayout) -> None:
    iproute.add_netns(layout.fabric_ns)
    iproute.make_bridge(layout.fabric_ns, BRIDGE)


def plug(layout: LabLayout, host: str, cut: bool = False) -> None:
    """Create `host`'s namespace and connect it to the fabric (port left down if `cut`)."""
    ns, port = layout.netns(host), layout.fabric_port(host)
    iproute.add_netns(ns)
    iproute.add_veth(layout.fabric_ns, port, ns, "eth0")
    iproute.set_link(layout.fabric_ns, port, up=not cut, master=BRIDGE)
    iproute.set_mac(ns, "eth0", host_mac(host))
    iproute.add_address(ns, "eth0", f"{host_address(host)}/{FABRIC_PREFIXLEN}")
    iproute.set_link(ns, "eth0", up=True)


def host_mac(host: str) -> str:
    """A fixed MAC per host, like a NIC's: after a power cycle the other hosts' ARP caches
    still hold the right one (a new random MAC would black-hole traffic for ~10 s)."""
    last = int(host_address(host).rsplit(".", 1)[1])
    return f"02:5e:c6:12:00:{last:02x}"


def task_netns_of(layout: LabLayout, host: str) -> list[str]:
    """Task namespaces whose veth peer is in `host`'s namespace."""
    try:
        peers = iproute.peer_netns_names(layout.netns(host))
    except IpError:
        return []
    return [name for name in peers if name.startswith(TASK_NETNS_PREFIX)]


def unplug(layout: LabLayout, host: str) -> None:
    """Remove `host`'s namespace, its fabric port and its task namespaces (a power-off).

    Processes are expected to be dead already (cgroup.kill); any that escaped the cgroup but
    still live in one of these namespaces are killed by pid.
    """
    ns = layout.netns(host)
    doomed = [*task_netns_of(layout, host), ns]
    for name in doomed:
        iproute.kill_netns_pids(name)
    iproute.delete_link(layout.fabric_ns, layout.fabric_port(host))
    for name in doomed:
        iproute.delete_netns(name)


def orphan_task_netns(netns_dir: Path = Path("/run/netns")) -> list[str]:
    """`shoal-t-*` namespaces with no process and no link but lo, and pins that hold no
    namespace any more (`stale_pins`): dead leftovers."""
    orphans = stale_pins(netns_dir)
    for name in iproute.list_netns():
        if not name.startswith(TASK_NETNS_PREFIX) or name in orphans:
            continue
        try:
            if iproute.netns_pids(name) or set(iproute.link_names(name)) - {"lo"}:
                continue
        except IpError:
            continue
        orphans.append(name)
    return orphans


def stale_pins(netns_dir: Path, min_age: float = 30.0) -> list[str]:
    """`shoal-t-*` files in `netns_dir` that are no mount point, older than `min_age`
    seconds: a pin made in a mount namespace that is gone (a lab host's daemon or shim
    killed) leaves its empty file behind, which `ip netns` lists but cannot enter. Young
    ones may be a pin being made right now (file first, then the bind mount)."""
    if not netns_dir.is_dir():
        return []
    now = time.time()
    stale = []
    with os.scandir(netns_dir) as entries:
        for entry in entries:
            if not entry.name.startswith(TASK_NETNS_PREFIX) or os.path.ismount(entry.path):
                continue
            try:
                if now - entry.stat(follow_symlinks=False).st_mtime >= min_age:
                    stale.append(entry.name)
            except FileNotFoundError:
                continue
    return sorted(stale)


def sweep(layout: LabLayout) -> list[str]:
    """Delete every namespace of the lab, its task namespaces and dead task namespaces.

    Works from names alone (no state file needed); returns what it deleted.
    """
    own = [name for name in iproute.list_netns() if layout.is_lab_netns(name)]
    tasks: list[str] = []
    for name in own:
        rest = name.removeprefix(layout.prefix + "-")
        if rest not in ("fabric", CLIENT, REGISTRY):
            tasks += task_netns_of(layout, rest)
    doomed = list(dict.fromkeys([*tasks, *orphan_task_netns(), *own]))
    for name in doomed:
        iproute.kill_netns_pids(name)
    for name in doomed:
        iproute.delete_netns(name)
    return doomed
