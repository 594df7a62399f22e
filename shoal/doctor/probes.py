"""One probe per cluster port, each returning its round trip in seconds or None (no answer).

* 2377/tcp: a TLS handshake with the node's own certificate (mutual TLS, ALPN shoal-rpc/1) against a
  manager's cluster listener; a refused or unanswered connection, or a failed handshake, is
  `None`.
* 7946/udp: a gossip ping sent from this node's gossip socket; the remote gossip core acks it
  to this node's gossip port, so a drop on either side is seen.
* 7946/tcp: one gossip push-pull, the exchange the remote's gossip answers on that port.
* 4789/udp: an ICMP echo to the remote node's VXLAN address (its slice's network address,
  held by its `shoal.4096` device): the only route to it is through this node's VXLAN
  device, so request and reply both travel as VXLAN on 4789/udp and the remote kernel
  answers it through its own VXLAN device.
* mtu: the same echo, as large as the overlay MTU with Don't Fragment set.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import struct
import tempfile
import time
from pathlib import Path

from shoal.cluster.rpc import RPC_ALPN

__all__ = ["icmp_echo", "tls_handshake"]

_ICMP_ECHO, _ICMP_REPLY = 8, 0
_IP_MTU_DISCOVER, _IP_PMTUDISC_DO = 10, 2  # linux/in.h (not in Python's socket module)


def _client_context(ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # cluster certificates name node IDs, not addresses
    ctx.load_verify_locations(cadata=ca_pem.decode())
    with tempfile.TemporaryDirectory(prefix="shoal-doctor-") as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(cert_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols([RPC_ALPN])
    return ctx


async def tls_handshake(
    addr: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, timeout: float
) -> tuple[float | None, str]:
    """Round trip of a TCP connect + TLS handshake to `addr` ("ip:port")."""
    host, _, port = addr.rpartition(":")
    ctx = _client_context(ca_pem, cert_pem, key_pem)
    start = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, int(port), ssl=ctx)
    except TimeoutError:
        return None, "no answer"
    except ssl.SSLError as exc:
        return None, f"TLS handshake failed: {exc.reason or exc}"
    except OSError as exc:
        return None, exc.strerror or str(exc)
    elapsed = time.monotonic() - start
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    return elapsed, ""


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return int(~total & 0xFFFF)


def _echo_packet(ident: int, seq: int, size: int) -> bytes:
    payload = bytes(max(0, size - 8))
    header = struct.pack("!BBHHH", _ICMP_ECHO, 0, 0, ident, seq)
    csum = _checksum(header + payload)
    return struct.pack("!BBHHH", _ICMP_ECHO, 0, csum, ident, seq) + payload


def _is_reply(packet: bytes, src: str, want_src: str, ident: int, seq: int) -> bool:
    if src != want_src or len(packet) < 28:
        return False
    ihl = (packet[0] & 0x0F) * 4
    kind, _, _, got_ident, got_seq = struct.unpack("!BBHHH", packet[ihl:ihl + 8])
    return bool(kind == _ICMP_REPLY and got_ident == ident and got_seq == seq)


async def icmp_echo(
    dst: str, timeout: float, ip_size: int = 84, dont_fragment: bool = False
) -> tuple[float | None, str]:
    """Round trip of one ICMP echo of `ip_size` bytes (IP header included) to `dst`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    if dont_fragment:
        sock.setsockopt(socket.IPPROTO_IP, _IP_MTU_DISCOVER, _IP_PMTUDISC_DO)
    ident, seq = os.getpid() & 0xFFFF, int.from_bytes(os.urandom(2), "big")
    loop = asyncio.get_running_loop()
    start = time.monotonic()
    try:
        sock.sendto(_echo_packet(ident, seq, ip_size - 20), (dst, 0))
        async with asyncio.timeout(timeout):
            while True:
                packet, (src, _) = await loop.sock_recvfrom(sock, 65535)
                if _is_reply(packet, src, dst, ident, seq):
                    return time.monotonic() - start, ""
    except TimeoutError:
        return None, "no answer"
    except OSError as exc:  # EMSGSIZE: larger than the route's known path MTU
        return None, exc.strerror or str(exc)
    finally:
        sock.close()
