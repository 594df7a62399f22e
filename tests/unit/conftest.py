"""Unit tests run in the root network namespace: they may talk to loopback only.

An autouse guard makes any attempt to connect or send elsewhere fail the test at once, so a
fake that forgets to stand in for the network cannot send a packet off this machine.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest


def _allowed(address: Any) -> bool:
    if isinstance(address, str | bytes):  # unix socket path
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # a manager made by a unit test serves 2377 on loopback, on a port of its own
    monkeypatch.setenv("SHOAL_CLUSTER_LISTEN", "127.0.0.1:0")
    monkeypatch.setenv("SHOAL_GOSSIP_LISTEN", "127.0.0.1:0")
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_sendto = socket.socket.sendto

    def connect(self: socket.socket, address: Any) -> None:
        if not _allowed(address):
            raise AssertionError(f"unit test tried to connect to {address!r} (loopback only)")
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not _allowed(address):
            raise AssertionError(f"unit test tried to connect to {address!r} (loopback only)")
        return real_connect_ex(self, address)

    def sendto(self: socket.socket, data: Any, *args: Any) -> int:
        address = args[-1]
        if not _allowed(address):
            raise AssertionError(f"unit test tried to send to {address!r} (loopback only)")
        return real_sendto(self, data, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket.socket, "sendto", sendto)
    yield
