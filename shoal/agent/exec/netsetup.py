"""Network plumbing of the exec runtime: node bridge, task veth, task netns (pyroute2).

All of it acts on the daemon's *current* network namespace (a lab host's, never the root's:
`runtime.ensure_node_network` checks) except `configure_task_side`, which talks to a task's
namespace through a netlink socket opened inside it. That socket is made by a short-lived
thread that setns()es (netns membership is per thread) and never goes back to a pool, so no
other code can run in the wrong namespace; pyroute2's own netns support forks the daemon,
which a threaded asyncio process should not do.

The requests of a task's start and removal (`create_veth`, `configure_task_side`,
`forget_neighbour`, `delete_link`) are built and read here, not by pyroute2, whose request
machinery (argument filters, an asyncio transport and queue per socket, a full decode of
every answer) cost a start and removal ~10 ms of CPU, 5x what the kernel's work and all
the rest did (bench/netsetup_start.py). Each call opens one NETLINK_ROUTE socket, finds
link indexes with SIOCGIFINDEX on it (an ioctl answers in the socket's namespace: the
task's for the task side), sends its requests in one datagram and reads one
acknowledgement per request: rtnetlink handles a request inside the sender's sendmsg, so
the answers are queued when it returns. `create_veth` is one request: the veth pair, its
master bridge and `up` are created together, and the kernel unregisters the pair if any
part fails.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import ipaddress
import os
import socket
import struct
from pathlib import Path

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from shoal import timeouts
from shoal.agent.exec.netns_call import in_netns

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
]

_NETLINK_ROUTE = 0
_ENOENT = 2
_EEXIST = 17
_ENODEV = 19
_EINVAL = 22
_ERANGE = 34


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
    """veth pair: `host_name` on the bridge and up, its peer `eth0` born in the task netns.

    One RTM_NEWLINK (create, exclusive) carries the master and the up flag: the kernel
    refuses an existing `host_name` (or an `eth0` in the task netns) with EEXIST, and
    unregisters the new pair when enslaving or bringing it up fails, so a failed call leaves
    nothing behind."""
    with _Rtnl() as nl:
        br = nl.index(bridge)
        if br is None:
            raise NetlinkError(_ENODEV, f"bridge {bridge} does not exist")
        peer = (
            _IFINFOMSG.pack(0, 0, 0, 0, 0)
            + _attr(_IFLA_IFNAME, b"eth0\0")
            + _attr(_IFLA_NET_NS_FD, _I32.pack(netns_fd))
        )
        linkinfo = _attr(_IFLA_INFO_KIND, b"veth\0") + _attr(
            _IFLA_INFO_DATA, _attr(_VETH_INFO_PEER, peer)
        )
        body = (
            _IFINFOMSG.pack(0, 0, 0, _IFF_UP, _IFF_UP)
            + _attr(_IFLA_IFNAME, _ifname(host_name))
            + _attr(_IFLA_MASTER, _U32.pack(br))
            + _attr(_IFLA_LINKINFO, linkinfo)
        )
        try:
            await nl.request((_RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL, body))
        except NetlinkError as exc:
            if exc.code == _EEXIST and nl.index(host_name) is not None:  # not the task's eth0
                raise NetlinkError(_EEXIST, f"link {host_name} exists") from exc
            # a master gone since the lookup: EINVAL (its index names no device)
            if exc.code in (_EINVAL, _ENODEV) and nl.index(bridge) is None:
                raise NetlinkError(_ENODEV, f"bridge {bridge} does not exist") from exc
            raise


def _netlink_socket_in(netns_fd: int) -> int:
    """A NETLINK_ROUTE socket fd living in the namespace `netns_fd` (see module doc)."""
    return in_netns(netns_fd, _netlink_socket, "netns-socket")


def _netlink_socket() -> int:
    return socket.socket(socket.AF_NETLINK, _SOCK_TYPE, _NETLINK_ROUTE).detach()


async def configure_task_side(
    netns_fd: int, address: ipaddress.IPv4Interface, gateway: ipaddress.IPv4Address
) -> None:
    """In the task netns: lo up, eth0 with `address` and up, default route via `gateway`.

    The four requests go in one datagram and the kernel runs them in order; it goes on with
    the next after a failed one, and the first failure is raised (the caller drops the task
    netns then)."""
    fd = _netlink_socket_in(netns_fd)
    with _Rtnl(fd) as nl:
        eth0 = nl.index("eth0")  # the socket's namespace: the task's
        if eth0 is None:
            raise NetlinkError(_ENODEV, "eth0 or lo missing in the task namespace")
        ip = address.ip.packed
        await nl.request(
            (_RTM_NEWLINK, 0, _IFINFOMSG.pack(0, 0, _LO_INDEX, _IFF_UP, _IFF_UP)),
            (
                _RTM_NEWADDR,
                _NLM_F_CREATE | _NLM_F_EXCL,
                _IFADDRMSG.pack(socket.AF_INET, address.network.prefixlen, 0, 0, eth0)
                + _attr(_IFA_ADDRESS, ip)
                + _attr(_IFA_LOCAL, ip),
            ),
            (_RTM_NEWLINK, 0, _IFINFOMSG.pack(0, 0, eth0, _IFF_UP, _IFF_UP)),
            (
                _RTM_NEWROUTE,
                _NLM_F_CREATE | _NLM_F_EXCL,
                _RTMSG.pack(
                    socket.AF_INET, 0, 0, 0, _RT_TABLE_MAIN, _RTPROT_STATIC, 0, _RTN_UNICAST, 0
                )
                + _attr(_RTA_GATEWAY, gateway.packed)
                + _attr(_RTA_OIF, _U32.pack(eth0)),
            ),
        )


async def forget_neighbour(bridge: str, address: ipaddress.IPv4Address) -> None:
    """Delete the neighbour entry for `address` on `bridge`, if there is one."""
    with _Rtnl() as nl:
        idx = nl.index(bridge)
        if idx is None:
            return
        body = _NDMSG.pack(socket.AF_INET, idx, _NUD_PERMANENT, 0, 0) + _attr(
            _NDA_DST, address.packed
        )
        try:
            await nl.request((_RTM_DELNEIGH, 0, body))
        except NetlinkError as exc:
            if exc.code not in (_ENOENT, _ENODEV):
                raise


async def delete_link(name: str) -> bool:
    """Delete a link of the current netns by name; False if it did not exist. The kernel
    deletes inside the send (~17 ms for a veth: it waits for RCU), so the send runs in a
    worker thread, not on the event loop (a socket stays in the netns it was made in)."""
    with _Rtnl() as nl:
        body = _IFINFOMSG.pack(0, 0, 0, 0, 0) + _attr(_IFLA_IFNAME, _ifname(name))
        try:
            await nl.request((_RTM_DELLINK, 0, body), in_thread=True)
        except NetlinkError as exc:
            if exc.code == _ENODEV:
                return False
            raise
        return True


# -- rtnetlink by hand, for the requests above ---------------------------------------------
_NLM_F_REQUEST = 0x1
_NLM_F_ACK = 0x4
_NLM_F_EXCL = 0x200
_NLM_F_CREATE = 0x400
_NLMSG_ERROR = 2
_RTM_NEWLINK = 16
_RTM_DELLINK = 17
_RTM_NEWADDR = 20
_RTM_NEWROUTE = 24
_RTM_DELNEIGH = 29
_IFLA_IFNAME = 3
_IFLA_MASTER = 10
_IFLA_LINKINFO = 18
_IFLA_NET_NS_FD = 28
_IFLA_INFO_KIND = 1
_IFLA_INFO_DATA = 2
_VETH_INFO_PEER = 1
_IFA_ADDRESS = 1
_IFA_LOCAL = 2
_RTA_OIF = 4
_RTA_GATEWAY = 5
_NDA_DST = 1
_IFF_UP = 0x1
_NUD_PERMANENT = 0x80
_RT_TABLE_MAIN = 254
_RTPROT_STATIC = 4
_RTN_UNICAST = 1
_LO_INDEX = 1  # LOOPBACK_IFINDEX: lo is link 1 of every network namespace
_SIOCGIFINDEX = 0x8933
_IFNAMSIZ = 16
_SOCK_TYPE = socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
_RECV_SIZE = 16384
_REPLY_TIMEOUT = 30.0  # the answers are queued before sendmsg returns: a safety net only

_NLMSGHDR = struct.Struct("=IHHII")
_NLMSGERR = struct.Struct("=i")
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBi")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst/src len, tos, table, proto, scope, type, flags
_NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
_NLA = struct.Struct("=HH")
_IFREQ_INDEX = struct.Struct(f"={_IFNAMSIZ}si20x")  # struct ifreq: name, ifindex
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")


def _attr(kind: int, payload: bytes) -> bytes:
    length = _NLA.size + len(payload)
    return _NLA.pack(length, kind) + payload + bytes(-length % 4)


def _ifname(name: str) -> bytes:
    return name.encode() + b"\0"  # NUL-terminated, as iproute2 sends it


class _Rtnl:
    """One NETLINK_ROUTE socket for one call's requests (never shared: no other request's
    answers to sort out), in the namespace it was made in."""

    def __init__(self, fd: int | None = None) -> None:
        if fd is None:
            self._sock = socket.socket(socket.AF_NETLINK, _SOCK_TYPE, _NETLINK_ROUTE)
        else:
            try:
                self._sock = socket.socket(
                    socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_ROUTE, fileno=fd
                )
            except BaseException:
                os.close(fd)
                raise
        self._seq = 0

    def __enter__(self) -> _Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()

    def index(self, name: str) -> int | None:
        """The index of link `name` in the socket's namespace (SIOCGIFINDEX), None if none."""
        raw = name.encode()
        if len(raw) >= _IFNAMSIZ:  # the kernel would truncate it; RTM_GETLINK says ERANGE
            raise NetlinkError(_ERANGE)
        try:
            answer = fcntl.ioctl(self._sock.fileno(), _SIOCGIFINDEX, _IFREQ_INDEX.pack(raw, 0))
        except OSError as exc:
            if exc.errno == _ENODEV:
                return None
            raise
        return int(_IFREQ_INDEX.unpack(answer)[1])

    async def request(self, *requests: tuple[int, int, bytes], in_thread: bool = False) -> None:
        """Send `requests` (type, extra flags, body), acknowledged, in one datagram (from a
        worker thread with `in_thread`) and wait for every acknowledgement; raise the first
        request's error in their order."""
        first = self._seq + 1
        parts = []
        for kind, flags, body in requests:
            self._seq += 1
            parts.append(
                _NLMSGHDR.pack(
                    _NLMSGHDR.size + len(body),
                    kind,
                    _NLM_F_REQUEST | _NLM_F_ACK | flags,
                    self._seq,
                    0,
                )
                + body
            )
        if in_thread:
            await asyncio.to_thread(self._sock.send, b"".join(parts))
        else:
            self._sock.send(b"".join(parts))
        codes: list[int | None] = [None] * len(requests)
        missing = len(requests)
        while missing:
            data = await self._recv()
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _, seq, _ = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    break
                slot = seq - first
                if kind == _NLMSG_ERROR and 0 <= slot < len(codes) and codes[slot] is None:
                    codes[slot] = -_NLMSGERR.unpack_from(data, offset + _NLMSGHDR.size)[0]
                    missing -= 1
                offset += (length + 3) & ~3
        for code in codes:
            if code:
                raise NetlinkError(code)

    async def _recv(self) -> bytes:
        try:
            return self._sock.recv(_RECV_SIZE)
        except BlockingIOError:
            pass
        self._sock.setblocking(False)
        loop = asyncio.get_running_loop()
        return await timeouts.wait_for(loop.sock_recv(self._sock, _RECV_SIZE), _REPLY_TIMEOUT)
