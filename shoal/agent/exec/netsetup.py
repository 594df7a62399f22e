"""Network plumbing of the exec runtime: node bridge, task veth, task netns (rtnetlink).

All of it acts on the daemon's *current* network namespace (a lab host's, never the root's:
`runtime.ensure_node_network` checks) except `configure_task_side`, which talks to a task's
namespace through a netlink socket opened inside it. That socket is made by a short-lived
thread that setns()es (netns membership is per thread) and never goes back to a pool, so no
other code can run in the wrong namespace; pyroute2's own netns support forks the daemon,
which a threaded asyncio process should not do.

The requests are built and read here (`shoal.rtnl`), not by pyroute2, whose request
machinery (argument filters, an asyncio transport and queue per socket, a full decode of
every answer) cost a start and removal ~10 ms of CPU, 5x what the kernel's work and all
the rest did (bench/netsetup_start.py), and whose import cost every daemon 8-10 MiB
(session 11: `ensure_bridge` was its last use here). Each call opens one NETLINK_ROUTE
socket, finds link indexes with SIOCGIFINDEX on it (an ioctl answers in the socket's
namespace: the task's for the task side), sends its requests in one datagram and reads one
acknowledgement per request: rtnetlink handles a request inside the sender's sendmsg, so
the answers are queued when it returns. `create_veth` is one request: the veth pair, its
master bridge and `up` are created together, and the kernel unregisters the pair if any
part fails.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import socket
from pathlib import Path

from shoal.agent.exec.netns_call import in_netns
from shoal.rtnl import (
    I32,
    IFA_ADDRESS,
    IFA_LOCAL,
    IFADDRMSG,
    IFF_UP,
    IFINFOMSG,
    IFLA_ADDRESS,
    IFLA_IFNAME,
    IFLA_INFO_DATA,
    IFLA_INFO_KIND,
    IFLA_LINKINFO,
    IFLA_MASTER,
    IFLA_NET_NS_FD,
    LO_INDEX,
    NDA_DST,
    NDMSG,
    NETLINK_ROUTE,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NUD_PERMANENT,
    RT_TABLE_MAIN,
    RTA_GATEWAY,
    RTA_OIF,
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELNEIGH,
    RTM_GETLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    RTMSG,
    RTN_UNICAST,
    RTPROT_STATIC,
    SOCK_TYPE,
    U32,
    VETH_INFO_PEER,
    NetlinkError,
    Rtnl,
    addr_msg,
    attr,
    ifname,
    ipv4_addresses,
    link_msg,
    mac_bytes,
)

__all__ = [
    "NetlinkError",
    "bridge_mac",
    "configure_task_side",
    "create_veth",
    "delete_link",
    "ensure_bridge",
    "forget_neighbour",
    "set_sysctl",
]

_ENOENT = errno.ENOENT
_EEXIST = errno.EEXIST
_ENODEV = errno.ENODEV
_EINVAL = errno.EINVAL


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
    mac = mac_bytes(bridge_mac(bridge, gateway))
    with Rtnl() as nl:
        lo = nl.index("lo")
        if lo is not None:
            await nl.request((RTM_NEWLINK, 0, link_msg(lo, up=True)))
        idx = nl.index(bridge)
        if idx is None:
            body = (
                link_msg()
                + attr(IFLA_IFNAME, ifname(bridge))
                + attr(IFLA_ADDRESS, mac)
                + attr(IFLA_LINKINFO, attr(IFLA_INFO_KIND, b"bridge\0"))
            )
            try:
                await nl.request((RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body))
            except NetlinkError as exc:
                if exc.code != _EEXIST:  # created concurrently: fine
                    raise
            idx = nl.index(bridge)
            assert idx is not None
        _, link = await nl.get(RTM_GETLINK, link_msg(idx), IFINFOMSG)
        if link.get(IFLA_ADDRESS) != mac:  # made by an older shoal, or by hand
            await nl.request((RTM_NEWLINK, 0, link_msg(idx) + attr(IFLA_ADDRESS, mac)))
        present = {address for index, address in await ipv4_addresses(nl) if index == idx}
        for stale in present - {gateway}:
            await nl.request(
                (RTM_DELADDR, 0, addr_msg(idx, stale.ip, stale.network.prefixlen))
            )
        if gateway not in present:
            await nl.request(
                (
                    RTM_NEWADDR,
                    NLM_F_CREATE | NLM_F_EXCL,
                    addr_msg(idx, gateway.ip, gateway.network.prefixlen),
                )
            )
        await nl.request((RTM_NEWLINK, 0, link_msg(idx, up=True)))


def set_sysctl(name: str, value: str) -> None:
    """Write a sysctl of the current network namespace (/proc/sys/net is per netns)."""
    Path("/proc/sys", *name.split(".")).write_text(value)


async def create_veth(bridge: str, host_name: str, netns_fd: int, peer: str = "eth0") -> None:
    """veth pair: `host_name` on the bridge and up, its peer `peer` born in the task netns.

    One RTM_NEWLINK (create, exclusive) carries the master and the up flag: the kernel
    refuses an existing `host_name` (or a `peer` in the task netns) with EEXIST, and
    unregisters the new pair when enslaving or bringing it up fails, so a failed call leaves
    nothing behind."""
    with Rtnl() as nl:
        br = nl.index(bridge)
        if br is None:
            raise NetlinkError(_ENODEV, f"bridge {bridge} does not exist")
        peer_msg = (
            IFINFOMSG.pack(0, 0, 0, 0, 0)
            + attr(IFLA_IFNAME, ifname(peer))
            + attr(IFLA_NET_NS_FD, I32.pack(netns_fd))
        )
        linkinfo = attr(IFLA_INFO_KIND, b"veth\0") + attr(
            IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer_msg)
        )
        body = (
            IFINFOMSG.pack(0, 0, 0, IFF_UP, IFF_UP)
            + attr(IFLA_IFNAME, ifname(host_name))
            + attr(IFLA_MASTER, U32.pack(br))
            + attr(IFLA_LINKINFO, linkinfo)
        )
        try:
            await nl.request((RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body))
        except NetlinkError as exc:
            if exc.code == _EEXIST and nl.index(host_name) is not None:  # not the task's peer
                raise NetlinkError(_EEXIST, f"link {host_name} exists") from exc
            # a master gone since the lookup: EINVAL (its index names no device)
            if exc.code in (_EINVAL, _ENODEV) and nl.index(bridge) is None:
                raise NetlinkError(_ENODEV, f"bridge {bridge} does not exist") from exc
            raise


def _netlink_socket_in(netns_fd: int) -> int:
    """A NETLINK_ROUTE socket fd living in the namespace `netns_fd` (see module doc)."""
    return in_netns(netns_fd, _netlink_socket, "netns-socket")


def _netlink_socket() -> int:
    return socket.socket(socket.AF_NETLINK, SOCK_TYPE, NETLINK_ROUTE).detach()


async def configure_task_side(
    netns_fd: int, address: ipaddress.IPv4Interface, gateway: ipaddress.IPv4Address
) -> None:
    """In the task netns: lo up, eth0 with `address` and up, default route via `gateway`.

    The four requests go in one datagram and the kernel runs them in order; it goes on with
    the next after a failed one, and the first failure is raised (the caller drops the task
    netns then)."""
    fd = _netlink_socket_in(netns_fd)
    with Rtnl(fd) as nl:
        eth0 = nl.index("eth0")  # the socket's namespace: the task's
        if eth0 is None:
            raise NetlinkError(_ENODEV, "eth0 or lo missing in the task namespace")
        ip = address.ip.packed
        await nl.request(
            (RTM_NEWLINK, 0, IFINFOMSG.pack(0, 0, LO_INDEX, IFF_UP, IFF_UP)),
            (
                RTM_NEWADDR,
                NLM_F_CREATE | NLM_F_EXCL,
                IFADDRMSG.pack(socket.AF_INET, address.network.prefixlen, 0, 0, eth0)
                + attr(IFA_ADDRESS, ip)
                + attr(IFA_LOCAL, ip),
            ),
            (RTM_NEWLINK, 0, IFINFOMSG.pack(0, 0, eth0, IFF_UP, IFF_UP)),
            (
                RTM_NEWROUTE,
                NLM_F_CREATE | NLM_F_EXCL,
                RTMSG.pack(
                    socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, 0, RTN_UNICAST, 0
                )
                + attr(RTA_GATEWAY, gateway.packed)
                + attr(RTA_OIF, U32.pack(eth0)),
            ),
        )


async def forget_neighbour(bridge: str, address: ipaddress.IPv4Address) -> None:
    """Delete the neighbour entry for `address` on `bridge`, if there is one."""
    with Rtnl() as nl:
        idx = nl.index(bridge)
        if idx is None:
            return
        body = NDMSG.pack(socket.AF_INET, idx, NUD_PERMANENT, 0, 0) + attr(
            NDA_DST, address.packed
        )
        try:
            await nl.request((RTM_DELNEIGH, 0, body))
        except NetlinkError as exc:
            if exc.code not in (_ENOENT, _ENODEV):
                raise


async def delete_link(name: str) -> bool:
    """Delete a link of the current netns by name; False if it did not exist. The kernel
    deletes inside the send (~17 ms for a veth: it waits for RCU), so the send runs in a
    worker thread, not on the event loop (a socket stays in the netns it was made in)."""
    with Rtnl() as nl:
        body = IFINFOMSG.pack(0, 0, 0, 0, 0) + attr(IFLA_IFNAME, ifname(name))
        try:
            await nl.request((RTM_DELLINK, 0, body), in_thread=True)
        except NetlinkError as exc:
            if exc.code == _ENODEV:
                return False
            raise
        return True
