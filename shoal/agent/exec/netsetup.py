"""Network plumbing of the exec runtime: node bridge, task veth, task netns (pyroute2).

All of it acts on the daemon's *current* network namespace (a lab host's, never the root's:
`runtime.ensure_node_network` checks) except `configure_task_side`, which talks to a task's
namespace through a netlink socket opened inside it. That socket is made by a short-lived
thread that setns()es (netns membership is per thread) and never goes back to a pool, so no
other code can run in the wrong namespace; pyroute2's own netns support forks the daemon,
which a threaded asyncio process should not do.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import socket
import subprocess
import sys
from pathlib import Path

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from shoal.agent.exec import nsutil
from shoal.agent.exec.netns_call import in_netns
from shoal.errors import ShoalError

__all__ = [
    "NetlinkError",
    "bridge_mac",
    "configure_task_side",
    "create_veth",
    "delete_link",
    "ensure_bridge",
    "forget_neighbour",
    "link_index",
    "set_sysctl",
    "unpin",
]

_NETLINK_ROUTE = 0
_ENOENT = 2
_ENODEV = 19
_EEXIST = 17


async def link_index(ipr: AsyncIPRoute, name: str) -> int | None:
    """The index of link `name`, None if there is none: one RTM_GETLINK by name (pyroute2's
    `link_lookup` dumps and decodes every link: O(links) per call, and a node with 60
    tasks has 60 veths, several lookups per task start)."""
    try:
        found = await ipr.link("get", ifname=name)
    except NetlinkError as exc:
        if exc.code == _ENODEV:
            return None
        raise
    return int(found[0]["index"]) if found else None


def bridge_mac(bridge: str, gateway: ipaddress.IPv4Interface) -> str:
    """The fixed MAC of bridge `bridge`: locally administered unicast, derived from its name
    and gateway (one L2 domain per node, so the same value on two nodes never meets).

    A bridge left to itself takes the lowest MAC among its ports and changes it as task
    veths come and go; the tasks on it keep the old gateway MAC in their ARP cache until
    they re-resolve it, and their packets to the gateway are dropped meanwhile (seconds of
    timeouts on every VIP and off-node path during a scale-down). Docker fixes its bridges'
    MACs for the same reason."""
    digest = hashlib.sha256(f"{bridge}/{gateway}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


async def ensure_bridge(bridge: str, gateway: ipaddress.IPv4Interface) -> None:
    """Bridge `bridge` up holding exactly `gateway` as IPv4 address and the fixed MAC
    `bridge_mac`; lo up. Idempotent."""
    mac = bridge_mac(bridge, gateway)
    async with AsyncIPRoute() as ipr:
        lo = await link_index(ipr, "lo")
        if lo is not None:
            await ipr.link("set", index=lo, state="up")
        idx = await link_index(ipr, bridge)
        if idx is None:
            try:
                await ipr.link("add", ifname=bridge, kind="bridge", address=mac)
            except NetlinkError as exc:
                if exc.code != _EEXIST:  # created concurrently: fine
                    raise
            idx = await link_index(ipr, bridge)
            assert idx is not None
        found = await ipr.link("get", index=idx)
        if found[0].get("IFLA_ADDRESS") != mac:  # made by an older shoal, or by hand
            await ipr.link("set", index=idx, address=mac)
        present = set()
        async for msg in await ipr.addr("dump", index=idx, family=socket.AF_INET):
            present.add(ipaddress.IPv4Interface(f"{msg.get('IFA_ADDRESS')}/{msg['prefixlen']}"))
        for stale in present - {gateway}:
            await ipr.addr(
                "del", index=idx, address=str(stale.ip), prefixlen=stale.network.prefixlen
            )
        if gateway not in present:
            await ipr.addr(
                "add", index=idx, address=str(gateway.ip), prefixlen=gateway.network.prefixlen
            )
        await ipr.link("set", index=idx, state="up")


def set_sysctl(name: str, value: str) -> None:
    """Write a sysctl of the current network namespace (/proc/sys/net is per netns)."""
    Path("/proc/sys", *name.split(".")).write_text(value)


async def create_veth(bridge: str, host_name: str, netns_fd: int) -> None:
    """veth pair: `host_name` on the bridge and up, its peer `eth0` born in the task netns."""
    async with AsyncIPRoute() as ipr:
        br = await link_index(ipr, bridge)
        if br is None:
            raise NetlinkError(_ENODEV, f"bridge {bridge} does not exist")
        if await link_index(ipr, host_name) is not None:
            raise NetlinkError(_EEXIST, f"link {host_name} exists")
        await ipr.link(
            "add",
            ifname=host_name,
            kind="veth",
            peer={"ifname": "eth0", "net_ns_fd": netns_fd},
        )
        idx = await link_index(ipr, host_name)
        try:
            if idx is None:
                raise NetlinkError(_ENODEV, f"link {host_name} vanished")
            await ipr.link("set", index=idx, master=br, state="up")
        except BaseException:
            if idx is not None:
                await ipr.link("del", index=idx)  # ours: the caller only knows whole success
            raise


def _netlink_socket_in(netns_fd: int) -> int:
    """A NETLINK_ROUTE socket fd living in the namespace `netns_fd` (see module doc)."""
    return in_netns(netns_fd, _netlink_socket, "netns-socket")


def _netlink_socket() -> int:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_ROUTE).detach()


async def configure_task_side(
    netns_fd: int, address: ipaddress.IPv4Interface, gateway: ipaddress.IPv4Address
) -> None:
    """In the task netns: lo up, eth0 with `address` and up, default route via `gateway`."""
    fd = _netlink_socket_in(netns_fd)
    try:
        ipr = AsyncIPRoute(fileno=fd)
    except BaseException:
        os.close(fd)
        raise
    async with ipr:
        lo = await link_index(ipr, "lo")
        eth0 = await link_index(ipr, "eth0")
        if lo is None or eth0 is None:
            raise NetlinkError(_ENODEV, "eth0 or lo missing in the task namespace")
        await ipr.link("set", index=lo, state="up")
        await ipr.addr(
            "add", index=eth0, address=str(address.ip), prefixlen=address.network.prefixlen
        )
        await ipr.link("set", index=eth0, state="up")
        await ipr.route("add", dst="0.0.0.0/0", gateway=str(gateway), oif=eth0)


async def forget_neighbour(bridge: str, address: ipaddress.IPv4Address) -> None:
    """Delete the neighbour entry for `address` on `bridge`, if there is one."""
    async with AsyncIPRoute() as ipr:
        idx = await link_index(ipr, bridge)
        if idx is None:
            return
        try:
            await ipr.neigh("del", dst=str(address), ifindex=idx)
        except NetlinkError as exc:
            if exc.code not in (_ENOENT, _ENODEV):
                raise


async def delete_link(name: str) -> bool:
    """Delete a link of the current netns by name; False if it did not exist."""
    async with AsyncIPRoute() as ipr:
        idx = await link_index(ipr, name)
        if idx is None:
            return False
        try:
            await ipr.link("del", index=idx)
        except NetlinkError as exc:
            if exc.code == _ENODEV:
                return False
            raise
        return True


async def unpin(netns_path: str, host_mntns: str | None, python_path: str) -> None:
    """Remove a task netns pin made by the shim (`nsutil.pin_new_netns`); idempotent."""
    if not os.path.lexists(netns_path):
        return
    own = nsutil.ns_inode("/proc/self/ns/mnt")
    try:
        if host_mntns is None or nsutil.ns_inode(host_mntns) == own:
            nsutil.unpin_netns(netns_path, None)
            return
    except OSError as exc:
        raise ShoalError(f"removing network namespace {netns_path} failed: {exc}") from exc
    # the pin is in the host mount namespace, which only a single-threaded process may
    # enter (the daemon has threads): a tiny helper does it
    helper = await asyncio.create_subprocess_exec(
        sys.executable,
        "-S",
        "-m",
        "shoal.agent.exec.nsutil",
        "unpin",
        netns_path,
        host_mntns,
        env={"PYTHONPATH": python_path},
        stderr=subprocess.PIPE,
    )
    _, err = await helper.communicate()
    if helper.returncode != 0:
        raise ShoalError(f"removing network namespace {netns_path} failed: {err.decode()}")
