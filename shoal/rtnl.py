"""rtnetlink by hand: the requests and dumps the exec runtime, the service networks and the
overlay send, built and read here instead of by pyroute2.

pyroute2's package import loads ~160 modules (its NDB with sqlite3, unittest, multiprocessing,
plan9, ipset, tc...): 8-10 MiB of every daemon's RSS, for the dozen message kinds below
(docs/design/exec-runtime.md, "Session 11"). What is sent is byte for byte what pyroute2
sent for the same calls (captured from its sockets), so the kernel state made is the same.

One `Rtnl` is one NETLINK_ROUTE socket for one call's requests, in the namespace it was made
in, never shared: no other request's answers to sort out. rtnetlink handles a request inside
the sender's sendmsg (a dump's first part too; the next parts are made as they are read), so
the answers are queued when the send returns; the receive timeout is a safety net only.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import ipaddress
import os
import socket
import struct
from collections.abc import Iterator

from shoal import timeouts

__all__ = [
    "Attrs",
    "NetlinkError",
    "Rtnl",
    "addr_msg",
    "attr",
    "ipv4_addresses",
    "ipv4_addresses_blocking",
    "link_msg",
    "mac_bytes",
    "mac_text",
    "parse_attrs",
]

NETLINK_ROUTE = 0

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26
RTM_NEWNEIGH = 28
RTM_DELNEIGH = 29
RTM_GETNEIGH = 30

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_MASTER = 10
IFLA_LINKINFO = 18
IFLA_AF_SPEC = 26
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
IFLA_INET6_ADDR_GEN_MODE = 8
VETH_INFO_PEER = 1
IFLA_VXLAN_ID = 1
IFLA_VXLAN_LINK = 3
IFLA_VXLAN_LOCAL = 4
IFLA_VXLAN_LEARNING = 7
IFLA_VXLAN_PORT = 15
IFA_ADDRESS = 1
IFA_LOCAL = 2
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_TABLE = 15
NDA_DST = 1
NDA_LLADDR = 2

IFF_UP = 0x1
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
NTF_SELF = 0x2
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4
RTN_UNICAST = 1
RTNH_F_ONLINK = 4
LO_INDEX = 1  # LOOPBACK_IFINDEX: lo is link 1 of every network namespace

NLMSGHDR = struct.Struct("=IHHII")
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBi")  # family, prefixlen, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst/src len, tos, table, proto, scope, type, flags
NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
U32 = struct.Struct("=I")
I32 = struct.Struct("=i")
BE16 = struct.Struct("!H")
_NLA = struct.Struct("=HH")
_NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER
_SIOCGIFINDEX = 0x8933
_IFNAMSIZ = 16
_IFREQ_INDEX = struct.Struct(f"={_IFNAMSIZ}si20x")  # struct ifreq: name, ifindex
SOCK_TYPE = socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
# the kernel sizes a dump's parts to the largest read buffer seen, at most ~32 KiB
_RECV_SIZE = 32768
_REPLY_TIMEOUT = 30.0

Attrs = dict[int, bytes]


class NetlinkError(Exception):
    """A request the kernel refused: `code` is the errno (pyroute2's exception's shape)."""

    def __init__(self, code: int, msg: str | None = None) -> None:
        super().__init__(code, msg or os.strerror(code))
        self.code = code


def attr(kind: int, payload: bytes) -> bytes:
    length = _NLA.size + len(payload)
    return _NLA.pack(length, kind) + payload + bytes(-length % 4)


def ifname(name: str) -> bytes:
    return name.encode() + b"\0"  # NUL-terminated, as iproute2 sends it


def parse_attrs(data: bytes, offset: int = 0, end: int | None = None) -> Attrs:
    """The attributes in `data[offset:end]`, by type (the last one of a type wins)."""
    end = len(data) if end is None else end
    found: Attrs = {}
    while offset + _NLA.size <= end:
        length, kind = _NLA.unpack_from(data, offset)
        if length < _NLA.size or offset + length > end:
            break
        found[kind & _NLA_TYPE_MASK] = data[offset + _NLA.size : offset + length]
        offset += (length + 3) & ~3
    return found


def text(value: bytes | None) -> str | None:
    return None if value is None else value.split(b"\0", 1)[0].decode()


def u32(value: bytes | None) -> int | None:
    return None if value is None else int(U32.unpack(value[:4])[0])


def mac_text(value: bytes) -> str:
    return ":".join(f"{b:02x}" for b in value)


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


class Rtnl:
    """One NETLINK_ROUTE socket for one call's requests (see the module docstring)."""

    def __init__(self, fd: int | None = None) -> None:
        if fd is None:
            self._sock = socket.socket(socket.AF_NETLINK, SOCK_TYPE, NETLINK_ROUTE)
        else:
            try:
                self._sock = socket.socket(
                    socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE, fileno=fd
                )
            except BaseException:
                os.close(fd)
                raise
        self._seq = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()

    def index(self, name: str) -> int | None:
        """The index of link `name` in the socket's namespace (SIOCGIFINDEX), None if none."""
        raw = name.encode()
        if len(raw) >= _IFNAMSIZ:  # the kernel would truncate it; RTM_GETLINK says ERANGE
            raise NetlinkError(errno.ERANGE)
        try:
            answer = fcntl.ioctl(self._sock.fileno(), _SIOCGIFINDEX, _IFREQ_INDEX.pack(raw, 0))
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        return int(_IFREQ_INDEX.unpack(answer)[1])

    def _header(self, kind: int, flags: int, body: bytes) -> bytes:
        self._seq += 1
        return NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, self._seq, 0) + body

    async def request(self, *requests: tuple[int, int, bytes], in_thread: bool = False) -> None:
        """Send `requests` (type, extra flags, body), acknowledged, in one datagram (from a
        worker thread with `in_thread`) and wait for every acknowledgement; raise the first
        request's error in their order."""
        first = self._seq + 1
        data = b"".join(
            self._header(kind, NLM_F_REQUEST | NLM_F_ACK | flags, body)
            for kind, flags, body in requests
        )
        if in_thread:
            await asyncio.to_thread(self._sock.send, data)
        else:
            self._sock.send(data)
        codes: list[int | None] = [None] * len(requests)
        missing = len(requests)
        while missing:
            for kind, _, seq, payload in _messages(await self._recv()):
                slot = seq - first
                if kind == NLMSG_ERROR and 0 <= slot < len(codes) and codes[slot] is None:
                    codes[slot] = -I32.unpack_from(payload)[0]
                    missing -= 1
        for code in codes:
            if code:
                raise NetlinkError(code)

    async def dump(
        self, kind: int, body: bytes, fixed: struct.Struct
    ) -> list[tuple[tuple[int, ...], Attrs]]:
        """Every message of a dump request: (its fixed header's fields, its attributes).
        A dump the kernel marks inconsistent (the table changed meanwhile) is an error, as
        pyroute2's NetlinkDumpInterrupted was: the caller reads again later."""
        self._sock.send(self._header(kind, NLM_F_REQUEST | NLM_F_DUMP, body))
        reader = _Dump(self._seq, fixed)
        while not reader.feed(await self._recv()):
            pass
        return reader.found

    def dump_blocking(
        self, kind: int, body: bytes, fixed: struct.Struct
    ) -> list[tuple[tuple[int, ...], Attrs]]:
        """`dump` for code outside the event loop (it blocks the calling thread)."""
        self._sock.send(self._header(kind, NLM_F_REQUEST | NLM_F_DUMP, body))
        reader = _Dump(self._seq, fixed)
        self._sock.settimeout(_REPLY_TIMEOUT)
        while not reader.feed(self._sock.recv(_RECV_SIZE)):
            pass
        return reader.found

    async def get(
        self, kind: int, body: bytes, fixed: struct.Struct
    ) -> tuple[tuple[int, ...], Attrs]:
        """The one answer to a GET request (RTM_GETLINK by index, say)."""
        self._sock.send(self._header(kind, NLM_F_REQUEST, body))
        seq = self._seq
        while True:
            for mkind, _, mseq, payload in _messages(await self._recv()):
                if mseq != seq:
                    continue
                if mkind == NLMSG_ERROR:
                    raise NetlinkError(-I32.unpack_from(payload)[0] or errno.EPROTO)
                return fixed.unpack_from(payload), parse_attrs(payload, fixed.size)

    async def _recv(self) -> bytes:
        try:
            return self._sock.recv(_RECV_SIZE)
        except BlockingIOError:
            pass
        self._sock.setblocking(False)
        loop = asyncio.get_running_loop()
        return await timeouts.wait_for(loop.sock_recv(self._sock, _RECV_SIZE), _REPLY_TIMEOUT)


class _Dump:
    """Collects the answers to dump request `seq` from the datagrams fed to it."""

    def __init__(self, seq: int, fixed: struct.Struct) -> None:
        self.seq = seq
        self.fixed = fixed
        self.found: list[tuple[tuple[int, ...], Attrs]] = []
        self.interrupted = False

    def feed(self, data: bytes) -> bool:
        """Take one datagram; True once the dump is complete (NetlinkError if it failed)."""
        for kind, flags, seq, payload in _messages(data):
            if seq != self.seq:
                continue
            if kind == NLMSG_DONE:
                code = -I32.unpack_from(payload)[0] if len(payload) >= I32.size else 0
                if code > 0:
                    raise NetlinkError(code)
                if self.interrupted:
                    raise NetlinkError(errno.EINTR, "netlink dump was interrupted")
                return True
            if kind == NLMSG_ERROR:
                code = -I32.unpack_from(payload)[0]
                if code:
                    raise NetlinkError(code)
                continue
            self.interrupted |= bool(flags & NLM_F_DUMP_INTR)
            fields = self.fixed.unpack_from(payload)
            self.found.append((fields, parse_attrs(payload, self.fixed.size)))
        return False


def _messages(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, seq, payload) of each message in one datagram."""
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, kind, flags, seq, _ = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size:
            break
        yield kind, flags, seq, data[offset + NLMSGHDR.size : offset + length]
        offset += (length + 3) & ~3


# -- the messages several callers send ----------------------------------------------------
def link_msg(index: int = 0, *, up: bool = False) -> bytes:
    """An ifinfomsg for link `index`; `up` sets IFF_UP (and only it: `change`)."""
    flags = IFF_UP if up else 0
    return IFINFOMSG.pack(0, 0, index, flags, flags)


def addr_msg(index: int, address: ipaddress.IPv4Address, prefixlen: int) -> bytes:
    """An IPv4 address of link `index`, with IFA_ADDRESS and IFA_LOCAL as pyroute2 sent it."""
    raw = address.packed
    return (
        IFADDRMSG.pack(socket.AF_INET, prefixlen, 0, 0, index)
        + attr(IFA_ADDRESS, raw)
        + attr(IFA_LOCAL, raw)
    )


_ADDR_DUMP = IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)


async def ipv4_addresses(nl: Rtnl) -> list[tuple[int, ipaddress.IPv4Interface]]:
    """(link index, address/prefix) of every IPv4 address (IFA_ADDRESS) of the namespace."""
    return _ipv4(await nl.dump(RTM_GETADDR, _ADDR_DUMP, IFADDRMSG))


def ipv4_addresses_blocking(nl: Rtnl) -> list[tuple[int, ipaddress.IPv4Interface]]:
    return _ipv4(nl.dump_blocking(RTM_GETADDR, _ADDR_DUMP, IFADDRMSG))


def _ipv4(
    dumped: list[tuple[tuple[int, ...], Attrs]],
) -> list[tuple[int, ipaddress.IPv4Interface]]:
    found = []
    for (_, prefixlen, _, _, index), attrs in dumped:
        raw = attrs.get(IFA_ADDRESS)
        if raw is not None and len(raw) == 4:
            found.append((index, ipaddress.IPv4Interface((ipaddress.IPv4Address(raw), prefixlen))))
    return found
