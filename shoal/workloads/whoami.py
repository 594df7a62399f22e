"""`whoami`: a tiny server that says which task answered, for demos, tests and benchmarks.

Like traefik/whoami. HTTP/1.1 (keep-alive, pipelining) on a raw `asyncio.Protocol`, so it
costs little per request:
    GET /health        -> 200 "ok"
    GET /data?size=N   -> 200 with N bytes of body (N <= 64 MiB)
    any other request  -> 200 text/plain lines `key: value`: hostname, task, task_id, slot,
                          service, node, node_id, client (the peer ip:port as seen)
UDP (optional): every datagram is answered with the same lines (client = the sender).
SIGTERM or SIGINT: stop listening and drain: every connection gets `Connection: close` on
its next answer and is closed after it (a keep-alive client reconnects, to a task that is
still in the mesh, without losing a request); connections still idle after `--drain-timeout`
seconds (5 by default) are closed; then exit 0.

`--proxy-protocol`: every connection (and every datagram) must start with a PROXY protocol
v2 header (what the userspace mesh sends on ports that ask for it); `client` is then the
address the header names and a `proxy` line gives the peer that sent it. A connection
without a valid header is closed, a datagram without one is dropped.

Run: `shoal whoami [--port 80] [--udp-port 53] [--proxy-protocol]` or
`python -m shoal.workloads.whoami`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import parse_qs, urlsplit

from shoal.mesh.proxyv2 import MAX_HEADER, ProxyHeader, ProxyProtocolError, parse

__all__ = ["Whoami", "identity", "main", "serve", "start"]

MAX_DATA = 64 * 1024 * 1024
MAX_HEAD = 64 * 1024


def identity(env: Mapping[str, str] | None = None) -> str:
    """The fixed part of the answer (every line but `client`), from the task's environment."""
    env = os.environ if env is None else env
    host = socket.gethostname()
    lines = [
        ("hostname", host),
        ("task", env.get("SHOAL_TASK_NAME") or host),
        ("task_id", env.get("SHOAL_TASK_ID", "")),
        ("slot", env.get("SHOAL_TASK_SLOT", "")),
        ("service", env.get("SHOAL_SERVICE_NAME", "")),
        ("node", env.get("SHOAL_NODE_HOSTNAME", "")),
        ("node_id", env.get("SHOAL_NODE_ID", "")),
    ]
    return "".join(f"{k}: {v}\n" for k, v in lines)


def _peer(addr: object) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr)


def _who(header: ProxyHeader | None, peer: object) -> bytes:
    """The `client` line (and, behind a PROXY v2 sender, the `proxy` line)."""
    if header is None:
        return f"client: {_peer(peer)}\n".encode()
    client = header.source if header.command == "proxy" and header.source else peer
    return f"client: {_peer(client)}\nproxy: {_peer(peer)}\n".encode()


def _response(status: str, body: bytes, close: bool, head_only: bool = False) -> bytes:
    extra = "Connection: close\r\n" if close else ""
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode()
    return head if head_only else head + body


@dataclass
class _Shared:
    ident: bytes
    proxy_protocol: bool = False
    draining: bool = False
    connections: set[asyncio.Transport] = field(default_factory=set)
    data: dict[int, bytes] = field(default_factory=dict)

    def blob(self, size: int) -> bytes:
        body = self.data.get(size)
        if body is None:
            if len(self.data) > 16:
                self.data.clear()
            body = self.data[size] = b"x" * size
        return body


class _Http(asyncio.Protocol):
    def __init__(self, shared: _Shared) -> None:
        self._shared = shared
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._client = b""
        self._awaiting_header = shared.proxy_protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._shared.connections.add(self._transport)
        if not self._awaiting_header:
            self._client = _who(None, transport.get_extra_info("peername"))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._shared.connections.discard(self._transport)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._awaiting_header and not self._take_header():
            return
        while self._transport is not None and not self._transport.is_closing():
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEAD:
                    self._transport.write(_response("431 Request Header Fields Too Large",
                                                     b"", True))
                    self._transport.close()
                return
            head = bytes(self._buf[:end]).decode("latin-1")
            lines = head.split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                length = -1
            if length < 0:
                self._transport.write(_response("400 Bad Request", b"bad length\n", True))
                self._transport.close()
                return
            if len(self._buf) < end + 4 + length:
                return  # wait for the body
            del self._buf[: end + 4 + length]
            self._answer(lines[0], headers)

    def _take_header(self) -> bool:
        """Consume the PROXY v2 header; False while incomplete or (connection closed) bad."""
        assert self._transport is not None
        try:
            found = parse(self._buf)
        except ProxyProtocolError:
            self._transport.close()
            return False
        if found is None:
            if len(self._buf) > MAX_HEADER:
                self._transport.close()
            return False
        header, used = found
        del self._buf[:used]
        self._client = _who(header, self._transport.get_extra_info("peername"))
        self._awaiting_header = False
        return True

    def _answer(self, request_line: str, headers: dict[str, str]) -> None:
        assert self._transport is not None
        parts = request_line.split(" ")
        if len(parts) != 3:
            self._transport.write(_response("400 Bad Request", b"bad request line\n", True))
            self._transport.close()
            return
        method, target, version = parts
        conn = headers.get("connection", "").lower()
        close = conn == "close" or (version == "HTTP/1.0" and conn != "keep-alive")
        close = close or self._shared.draining
        status, body = self._route(target)
        self._transport.write(_response(status, body, close, head_only=method == "HEAD"))
        if close:
            self._transport.close()

    def _route(self, target: str) -> tuple[str, bytes]:
        if target == "/health":
            return "200 OK", b"ok"
        if target.startswith("/data"):
            url = urlsplit(target)
            if url.path == "/data":
                try:
                    size = int(parse_qs(url.query).get("size", ["0"])[0])
                except ValueError:
                    size = -1
                if not 0 <= size <= MAX_DATA:
                    return "400 Bad Request", f"size must be 0..{MAX_DATA}\n".encode()
                return "200 OK", self._shared.blob(size)
        return "200 OK", self._shared.ident + self._client


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, shared: _Shared) -> None:
        self._shared = shared
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        if self._transport is None:
            return
        header = None
        if self._shared.proxy_protocol:
            try:
                found = parse(data)
            except ProxyProtocolError:
                return
            if found is None:
                return
            header = found[0]
        self._transport.sendto(self._shared.ident + _who(header, addr), addr)


class Whoami:
    """A running whoami: its bound ports, and `close()`."""

    def __init__(
        self, server: asyncio.Server, udp: asyncio.DatagramTransport | None, shared: _Shared
    ) -> None:
        self._server, self._udp, self._shared = server, udp, shared
        self.http_port: int = server.sockets[0].getsockname()[1]
        self.udp_port: int | None = udp.get_extra_info("sockname")[1] if udp else None

    def close(self) -> None:
        self._server.close()
        if self._udp is not None:
            self._udp.close()
        for transport in list(self._shared.connections):
            transport.close()

    async def drain(self, timeout: float) -> None:
        """Stop listening; close each connection after its next answer; `close()` the ones
        still open after `timeout` seconds."""
        self._server.close()
        self._shared.draining = True
        deadline = asyncio.get_running_loop().time() + timeout
        while self._shared.connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        self.close()


async def start(
    http_port: int = 80, udp_port: int | None = None, host: str = "0.0.0.0",
    env: Mapping[str, str] | None = None, proxy_protocol: bool = False,
) -> Whoami:
    """Start listening (port 0 picks a free one) and return at once."""
    loop = asyncio.get_running_loop()
    shared = _Shared(identity(env).encode(), proxy_protocol)
    server = await loop.create_server(
        lambda: _Http(shared), host, http_port, reuse_address=True, backlog=1024
    )
    udp: asyncio.DatagramTransport | None = None
    if udp_port is not None:
        try:
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(shared), local_addr=(host, udp_port)
            )
        except OSError:
            server.close()
            raise
    return Whoami(server, udp, shared)


async def serve(
    http_port: int = 80, udp_port: int | None = None, host: str = "0.0.0.0",
    proxy_protocol: bool = False,
) -> None:
    """Serve until cancelled (or, under `main`, until SIGTERM/SIGINT)."""
    app = await start(http_port, udp_port, host, proxy_protocol=proxy_protocol)
    try:
        await asyncio.Future()
    finally:
        app.close()


async def _run(
    http_port: int, udp_port: int | None, host: str, proxy_protocol: bool, drain_timeout: float
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app = await start(http_port, udp_port, host, proxy_protocol=proxy_protocol)
    udp = f" udp/{app.udp_port}" if app.udp_port is not None else ""
    pp = " (PROXY protocol v2)" if proxy_protocol else ""
    print(f"whoami: listening on {host} tcp/{app.http_port}{udp}{pp}", flush=True)
    try:
        await stop.wait()
        await app.drain(drain_timeout)
    finally:
        app.close()


def main(
    http_port: int = 80, udp_port: int | None = None, host: str = "0.0.0.0",
    proxy_protocol: bool = False, drain_timeout: float = 5.0,
) -> None:
    """Blocking entry point; returns (exit status 0) after SIGTERM or SIGINT and a drain."""
    run = _run(http_port, udp_port, host, proxy_protocol, drain_timeout)
    try:
        import uvloop  # optional, faster
    except ImportError:
        asyncio.run(run)
    else:
        uvloop.run(run)


def _cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shoal.workloads.whoami")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--udp-port", type=int, default=None)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--proxy-protocol", action="store_true")
    parser.add_argument("--drain-timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    try:
        main(args.port, args.udp_port, args.host, args.proxy_protocol, args.drain_timeout)
    except OSError as exc:
        print(f"whoami: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    _cli()
