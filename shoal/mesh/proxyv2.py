"""PROXY protocol version 2 (HAProxy's proxy-protocol.txt, section 2.2): the binary header a
proxy sends before the client's bytes so the server learns who the client really is.

PURE: bytes in, values out (no I/O, clock or randomness), so the userspace mesh (which
writes headers) and `shoal whoami --proxy-protocol` (which reads them) share one codec that
tests can exercise exhaustively.

Layout (network byte order):

    12 bytes  signature  \\r\\n\\r\\n\\0\\r\\nQUIT\\n
     1 byte   version (high nibble, 2) | command (low nibble: 0 LOCAL, 1 PROXY)
     1 byte   family (high: 0 UNSPEC, 1 INET, 2 INET6) | transport (low: 0 UNSPEC,
              1 STREAM, 2 DGRAM); only 0x00, 0x11, 0x12, 0x21, 0x22 are accepted
     2 bytes  length of what follows: addresses, then TLVs
     INET:  src addr (4), dst addr (4), src port (2), dst port (2)
     INET6: src addr (16), dst addr (16), src port (2), dst port (2)
     TLVs:  type (1), length (2), value

The UNIX family is refused (the spec lets a receiver refuse what it does not support; the
mesh never sends it). With family UNSPEC the block is skipped whole, as the spec asks.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Literal

from shoal.errors import InvalidArgument

__all__ = [
    "MAX_HEADER",
    "SIGNATURE",
    "Address",
    "ProxyHeader",
    "ProxyProtocolError",
    "encode",
    "header_for",
    "parse",
]

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
FIXED = 16  # signature + version/command + family/transport + length
MAX_HEADER = FIXED + 0xFFFF

Command = Literal["local", "proxy"]
Family = Literal["unspec", "inet", "inet6"]
Transport = Literal["unspec", "tcp", "udp"]
Address = tuple[str, int]

_COMMANDS: dict[int, Command] = {0: "local", 1: "proxy"}
_FAMILY_TRANSPORT: dict[int, tuple[Family, Transport]] = {
    0x00: ("unspec", "unspec"),
    0x11: ("inet", "tcp"),
    0x12: ("inet", "udp"),
    0x21: ("inet6", "tcp"),
    0x22: ("inet6", "udp"),
}
_ADDR_LEN: dict[Family, int] = {"unspec": 0, "inet": 12, "inet6": 36}
_IP_LEN: dict[Family, int] = {"inet": 4, "inet6": 16}


class ProxyProtocolError(InvalidArgument):
    """Bytes that are not a valid PROXY protocol v2 header (the connection must be refused)."""


@dataclass(frozen=True)
class ProxyHeader:
    """One decoded header. `source`/`destination` are None for family UNSPEC only.

    With command LOCAL (a health check by the proxy itself) a receiver uses the real
    connection endpoints and ignores the addresses, whatever they say.
    """

    command: Command
    family: Family
    transport: Transport
    source: Address | None
    destination: Address | None
    tlvs: tuple[tuple[int, bytes], ...] = ()


# ------------------------------------------------------------------------------- encoding


def _pack_ip(host: str, family: Family) -> bytes:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError as exc:
        raise ProxyProtocolError(f"PROXY v2: {host!r} is not an IP address") from exc
    if len(ip.packed) != _IP_LEN[family]:
        raise ProxyProtocolError(f"PROXY v2: {host} is not an address of family {family}")
    return ip.packed


def _check_port(port: int) -> int:
    if not 0 <= port <= 0xFFFF:
        raise ProxyProtocolError(f"PROXY v2: port {port} is out of range")
    return port


def encode(header: ProxyHeader) -> bytes:
    """The wire form of `header`; ProxyProtocolError if it cannot be expressed."""
    byte = next((b for b, ft in _FAMILY_TRANSPORT.items()
                 if ft == (header.family, header.transport)), None)
    if byte is None:
        raise ProxyProtocolError(
            f"PROXY v2: family {header.family} with transport {header.transport} is not valid"
        )
    if header.family == "unspec":
        if header.source is not None or header.destination is not None or header.tlvs:
            raise ProxyProtocolError("PROXY v2: family unspec carries no addresses or TLVs")
        body = b""
    else:
        if header.source is None or header.destination is None:
            raise ProxyProtocolError(f"PROXY v2: family {header.family} needs both addresses")
        (src, sport), (dst, dport) = header.source, header.destination
        body = (_pack_ip(src, header.family) + _pack_ip(dst, header.family)
                + struct.pack("!HH", _check_port(sport), _check_port(dport)))
    for kind, value in header.tlvs:
        if not 0 <= kind <= 0xFF or len(value) > 0xFFFF:
            raise ProxyProtocolError(f"PROXY v2: TLV type {kind} or its length is out of range")
        body += struct.pack("!BH", kind, len(value)) + value
    if len(body) > 0xFFFF:
        raise ProxyProtocolError("PROXY v2: header longer than 65535 bytes")
    command = 0x20 | (1 if header.command == "proxy" else 0)
    return SIGNATURE + struct.pack("!BBH", command, byte, len(body)) + body


def header_for(transport: Literal["tcp", "udp"], source: Address, destination: Address) -> bytes:
    """A PROXY command for a client `source` that spoke to `destination` (IPv4 or IPv6)."""
    family: Family = "inet6" if ":" in source[0] else "inet"
    return encode(ProxyHeader("proxy", family, transport, source, destination))


# -------------------------------------------------------------------------------- parsing


def parse(data: bytes | bytearray | memoryview) -> tuple[ProxyHeader, int] | None:
    """Decode the header at the start of `data`: (header, bytes it used), or None if `data`
    is a valid beginning that needs more bytes. ProxyProtocolError as soon as the bytes
    cannot start a valid v2 header (a stream that does not begin with the signature included).
    """
    view = memoryview(data)
    head = bytes(view[: len(SIGNATURE)])
    if head != SIGNATURE[: len(head)]:
        raise ProxyProtocolError("PROXY v2: the stream does not start with the v2 signature")
    if len(view) < FIXED:
        return None
    version_command, family_transport, length = struct.unpack_from("!BBH", view, 12)
    if version_command >> 4 != 2:
        raise ProxyProtocolError(f"PROXY v2: version {version_command >> 4} is not 2")
    command = _COMMANDS.get(version_command & 0x0F)
    if command is None:
        raise ProxyProtocolError(f"PROXY v2: unknown command {version_command & 0x0F}")
    pair = _FAMILY_TRANSPORT.get(family_transport)
    if pair is None:
        raise ProxyProtocolError(
            f"PROXY v2: unsupported family/transport byte {family_transport:#04x}"
        )
    family, transport = pair
    if length < _ADDR_LEN[family]:
        raise ProxyProtocolError(
            f"PROXY v2: {length} bytes cannot hold the addresses of family {family}"
        )
    if len(view) < FIXED + length:
        return None
    block = view[FIXED : FIXED + length]
    if family == "unspec":
        return ProxyHeader(command, family, transport, None, None), FIXED + length
    source, destination = _addresses(block, family)
    tlvs = _tlvs(block[_ADDR_LEN[family] :])
    return ProxyHeader(command, family, transport, source, destination, tlvs), FIXED + length


def _addresses(block: memoryview, family: Family) -> tuple[Address, Address]:
    size = _IP_LEN[family]
    src = ipaddress.ip_address(bytes(block[:size]))
    dst = ipaddress.ip_address(bytes(block[size : 2 * size]))
    sport, dport = struct.unpack_from("!HH", block, 2 * size)
    return (str(src), sport), (str(dst), dport)


def _tlvs(rest: memoryview) -> tuple[tuple[int, bytes], ...]:
    out: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(rest):
        if len(rest) - offset < 3:
            raise ProxyProtocolError("PROXY v2: truncated TLV header")
        kind, size = struct.unpack_from("!BH", rest, offset)
        offset += 3
        if len(rest) - offset < size:
            raise ProxyProtocolError(f"PROXY v2: TLV type {kind:#04x} overruns the header")
        out.append((kind, bytes(rest[offset : offset + size])))
        offset += size
    return tuple(out)
