"""Framed connections on 2377: the hot paths between managers, one connection each.

Raft's messages (and forwarded API requests) are small and frequent; each pair of
managers holds a connection per hot path of its own (`Raft/Stream`, `Control/
ForwardStream`), so they never queue behind a 16 MiB snapshot or a session's state on
the calls' connection (shoal.cluster.rpc). A framed connection is a TLS connection to
the front, told apart by its ALPN protocol (`FRAMES_ALPN`; the calls' is shoal-rpc/1):
the front serves it itself, and a write is a length prefix and the payload into the
asyncio transport, with no wait per message.

    client                                   server (TLSFront -> ClusterServer)
    TLS, ALPN shoal-frames/1, client cert -> handshake verifies the chain
    frame: method name ("Raft/Stream")    -> authorize like a call (roles, removed)
                                          <- frame: b"" (accepted) or "<code>\n<why>"
    frames ...                            <-> frames ... (the method's own protocol)

A frame is a 4-byte big-endian length and that many bytes (at most `MAX_FRAME`). A server
that does not speak frames selects no ALPN protocol: `open_frames` raises Unavailable.
TCP keepalive (10 s idle, 5 s probes) and a 15 s user timeout notice a peer that
vanished without a reset (as gRPC's keepalive pings did, without a wake-up per ping).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import Any, Generic, TypeVar

import msgspec

from shoal import timeouts
from shoal.ca.certs import MANAGER_SERVER_NAME
from shoal.ca.files import NodeTLS, load_identity
from shoal.errors import InvalidArgument, ShoalError, Unavailable

__all__ = [
    "FRAMES_ALPN",
    "MAX_FRAME",
    "READ_LIMIT",
    "FrameConn",
    "FramedDuplex",
    "FramesRefused",
    "client_context",
    "connect_tls",
    "open_frames",
    "tune_socket",
]

FRAMES_ALPN = "shoal-frames/1"
MAX_FRAME = 16 * 1024 * 1024  # as the calls' message limit on 2377
# StreamReader limit of 2377's connections: a frame up to the limit (and shoal-rpc/1's
# header) is read without the reader pausing the transport every 128 KiB
READ_LIMIT = MAX_FRAME + 64
_HIGH_WATER = 1024 * 1024  # buffered bytes above which a writer waits for the socket
_COPY_MAX = 64 * 1024  # a frame's body above this is written as it is, not joined


T = TypeVar("T")
_encode = msgspec.msgpack.Encoder().encode


class FramesRefused(InvalidArgument):
    """The server refused the method (no certificate, a role not allowed, removed node)."""


def tune_socket(writer: asyncio.StreamWriter) -> None:
    """Keepalive and a user timeout (10 s idle, 5 s probes, 15 s), no Nagle delay."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 15_000)


class FrameConn:
    """One framed connection (either end). `write` queues a frame without waiting; `drain`
    waits while much is buffered; `read` returns the next frame, None at the end."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        max_frame: int = MAX_FRAME,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._max = max_frame
        self.peer = _peer_name(writer)

    @property
    def ended(self) -> bool:
        return self._writer.is_closing() or self._reader.at_eof()

    @property
    def writable(self) -> bool:
        """A `write` now would be followed by no wait in `drain` (little is buffered)."""
        return self._writer.transport.get_write_buffer_size() <= _HIGH_WATER

    def write_parts(self, frames: list[tuple[bytes, bytes]]) -> None:
        """Queue frames given as (head, body), each frame head + body, in one write to the
        transport, except that a large body is handed over as it is (not copied)."""
        chunks: list[bytes] = []
        for head, body in frames:
            size = len(head) + len(body)
            if size > self._max:
                raise InvalidArgument(f"frame of {size} bytes is over {self._max}")
            chunks.append(size.to_bytes(4, "big") + head)
            if len(body) > _COPY_MAX:
                chunks.append(body)
            elif body:
                chunks[-1] += body
        if self._writer.is_closing():
            raise Unavailable(f"connection to {self.peer} closed")
        if len(chunks) == 1:
            self._writer.write(chunks[0])
        elif all(len(c) <= _COPY_MAX for c in chunks):
            self._writer.write(b"".join(chunks))
        else:  # (writelines would join them: a copy)
            for chunk in chunks:
                self._writer.write(chunk)

    def write(self, *payloads: bytes) -> None:
        """Queue `payloads` as one frame each, in one write to the transport."""
        for payload in payloads:
            if len(payload) > self._max:
                raise InvalidArgument(f"frame of {len(payload)} bytes is over {self._max}")
        if self._writer.is_closing():
            raise Unavailable(f"connection to {self.peer} closed")
        if len(payloads) == 1:
            self._writer.write(len(payloads[0]).to_bytes(4, "big") + payloads[0])
        else:
            self._writer.write(b"".join(len(p).to_bytes(4, "big") + p for p in payloads))

    async def drain(self, timeout: float | None = None) -> None:
        """Wait only while more than `_HIGH_WATER` bytes are buffered (a slow peer)."""
        transport = self._writer.transport
        if transport.get_write_buffer_size() <= _HIGH_WATER:
            return
        try:
            await timeouts.wait_for(self._writer.drain(), timeout)
        except (ConnectionError, OSError, ssl.SSLError) as exc:
            raise Unavailable(f"connection to {self.peer} broke: {exc}") from None
        except TimeoutError:
            raise Unavailable(f"connection to {self.peer}: writes stalled") from None

    async def read(self) -> bytes | None:
        try:
            head = await self._reader.readexactly(4)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise Unavailable(f"connection to {self.peer} cut inside a frame") from None
            return None
        except (ConnectionError, OSError, ssl.SSLError) as exc:
            raise Unavailable(f"connection to {self.peer} broke: {exc}") from None
        size = int.from_bytes(head, "big")
        if size > self._max:
            raise InvalidArgument(f"frame of {size} bytes from {self.peer} is over {self._max}")
        try:
            return await self._reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ssl.SSLError):
            raise Unavailable(f"connection to {self.peer} cut inside a frame") from None

    def close(self) -> None:
        """Drop the connection at once (no TLS close_notify wait; see TLSFront.stop)."""
        self._writer.transport.abort()


def _peer_name(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return str(peer)


def client_context(
    tls: NodeTLS | None, ca_pem: bytes | None = None, alpn: str = FRAMES_ALPN
) -> ssl.SSLContext:
    """TLS to a manager: its certificate must chain to the cluster CA (`ca_pem`, else
    the one of `tls`) and name `swarm-manager`; ours is presented when there is one (`tls`
    None: the join, before this node has a certificate)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ca = ca_pem if ca_pem is not None else (tls.ca_pem if tls is not None else b"")
    ctx.load_verify_locations(cadata=ca.decode())
    ctx.set_alpn_protocols([alpn])
    if tls is not None:
        load_identity(ctx, tls)
    return ctx


async def connect_tls(
    addr: str, ctx: ssl.SSLContext, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TLS connection to the manager at `addr` ("host:port", "[v6]:port"), verified
    against the name `swarm-manager`, socket tuned (`tune_socket`). Unavailable if it
    cannot be had within `timeout`."""
    host, _, port = addr.rpartition(":")
    try:
        reader, writer = await timeouts.wait_for(
            asyncio.open_connection(
                host.strip("[]"),
                int(port),
                ssl=ctx,
                server_hostname=MANAGER_SERVER_NAME,
                ssl_handshake_timeout=timeout,
                limit=READ_LIMIT,
            ),
            timeout,
        )
    except (OSError, TimeoutError, ssl.SSLError, ValueError) as exc:
        raise Unavailable(f"manager {addr} unreachable: {exc or type(exc).__name__}") from None
    tune_socket(writer)
    return reader, writer


async def open_frames(addr: str, ctx: ssl.SSLContext, method: str, timeout: float) -> FrameConn:
    """A framed connection to `addr` for `method`. Raises Unavailable (unreachable, or a
    server that does not speak frames) or FramesRefused."""
    reader, writer = await connect_tls(addr, ctx, timeout)
    sslobj = writer.get_extra_info("ssl_object")
    if sslobj is None or sslobj.selected_alpn_protocol() != FRAMES_ALPN:
        writer.transport.abort()
        raise Unavailable(f"manager {addr} speaks no {FRAMES_ALPN}")
    conn = FrameConn(reader, writer)
    try:
        conn.write(method.encode())
        answer = await timeouts.wait_for(conn.read(), timeout)
    except (ShoalError, TimeoutError) as exc:
        conn.close()
        raise Unavailable(f"manager {addr}: no answer to {method}: {exc}") from None
    if answer is None:
        conn.close()
        raise Unavailable(f"manager {addr} closed the connection for {method}")
    if answer:
        conn.close()
        code, _, why = answer.decode(errors="replace").partition("\n")
        raise FramesRefused(f"rpc error: code = {code} desc = {why}")  # as the calls' refusals
    return conn


class FramedDuplex(Generic[T]):
    """A framed connection used like `client.DuplexStream`: msgpack structs both ways,
    answers of type `T`."""

    def __init__(self, conn: FrameConn, response: type[T], timeout: float = 30.0) -> None:
        self._conn = conn
        self._decode = msgspec.msgpack.Decoder(response).decode
        self._timeout = timeout

    @property
    def ended(self) -> bool:
        return self._conn.ended

    async def write(self, request: Any) -> None:
        self._conn.write(_encode(request))
        await self._conn.drain(self._timeout)

    async def read(self) -> T | None:
        frame = await self._conn.read()
        if frame is None:
            return None
        try:
            return self._decode(frame)
        except msgspec.DecodeError as exc:
            raise InvalidArgument(f"malformed answer from {self._conn.peer}: {exc}") from None

    def cancel(self) -> None:
        self._conn.close()
