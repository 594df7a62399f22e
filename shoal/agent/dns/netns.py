"""Sockets bound to 127.0.0.11:53 inside a task's network namespace.

Made by a short-lived thread in the task's namespace (`exec.netns_call`); the daemon's
event loop then serves them. lo is brought up first (a fresh netns has it down).
"""

from __future__ import annotations

import fcntl
import socket
import struct

from shoal.agent.exec.netns_call import in_netns_at

__all__ = ["DNS_ADDRESS", "DNS_PORT", "sockets_in_netns"]

DNS_ADDRESS = "127.0.0.11"
DNS_PORT = 53
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def _lo_up(sock: socket.socket) -> None:
    request = struct.pack("16sH14x", b"lo", 0)
    flags = struct.unpack("16sH14x", fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request))[1]
    if not flags & _IFF_UP:
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def _make() -> tuple[socket.socket, socket.socket]:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        _lo_up(udp)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        udp.bind((DNS_ADDRESS, DNS_PORT))
        tcp.bind((DNS_ADDRESS, DNS_PORT))
        tcp.listen(64)
        udp.setblocking(False)
        tcp.setblocking(False)
    except BaseException:
        udp.close()
        tcp.close()
        raise
    return udp, tcp


def sockets_in_netns(netns_path: str) -> tuple[socket.socket, socket.socket]:
    """(udp, tcp) sockets listening on 127.0.0.11:53 in the namespace at `netns_path`."""
    return in_netns_at(netns_path, _make, "dns-netns-socket")
