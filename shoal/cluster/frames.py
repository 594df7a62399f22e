"""Framed connections on 2377: the hot paths between managers without gRPC.

Raft's messages (and forwarded API requests) are small and frequent. Through grpc.aio each
streamed message cost ~0.13 ms of CPU in one process and ~0.25 ms in a loaded daemon (the
write waits for a completion from gRPC's poller thread, then the front relays the bytes
to gRPC over loopback on the receiving side); with 1 writer a commit took 4 such writes on
the leader and 2 on each follower. A framed connection is a plain TLS connection to the
same front, told apart by its ALPN protocol (`FRAMES_ALPN`; gRPC offers h2): the front
serves it itself (no relay, no gRPC), and a write is a length prefix and the payload into
the asyncio transport, with no wait per message.

    client                                   server (TLSFront -> ClusterServer)
    TLS, ALPN shoal-frames/1, client cert -> handshake verifies the chain (as for gRPC)
    frame: method name ("Raft/Stream")    -> authorize like a gRPC method (roles, removed)
                                          <- frame: b"" (accepted) or "<code>\n<why>"
    frames ...                            <-> frames ... (the method's own protocol)

A frame is a 4-byte big-endian length and that many bytes (at most `MAX_FRAME`). A server
that does not speak frames (an older shoal) selects no ALPN protocol: `open_frames` then
returns None and the caller keeps using gRPC. TCP keepalive (10 s idle, 5 s probes) and a
15 s user timeout stand in for gRPC's keepalive pings: a peer that vanished without a
reset is noticed like before.
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
    "FrameConn",
    "FramedDuplex",
    "FramesRefused",
    "client_context",
    "open_frames",
    "tune_socket",
]

FRAMES_ALPN = "shoal-frames/1"
MAX_FRAME = 16 * 1024 * 1024  # as gRPC's message limit on 2377
_HIGH_WATER = 1024 * 1024  # buffered bytes above which a writer waits for the socket


T = TypeVar("T")
_encode = msgspec.msgpack.Encoder().encode


class FramesRefused(InvalidArgument):
    """The server refused the method (no certificate, a role not allowed, removed node)."""


def tune_socket(writer: asyncio.StreamWriter) -> None:
    """Keepalive and a user timeout like gRPC's pings (10 s, 5 s), no Nagle delay."""
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

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.peer = str(writer.get_extra_info("peername"))

    @property
    def ended(self) -> bool:
        return self._writer.is_closing() or self._reader.at_eof()

    @property
    def writable(self) -> bool:
        """A `write` now would be followed by no wait in `drain` (little is buffered)."""
        return self._writer.transport.get_write_buffer_size() <= _HIGH_WATER

    def write(self, payload: bytes) -> None:
        if len(payload) > MAX_FRAME:
            raise InvalidArgument(f"frame of {len(payload)} bytes is over {MAX_FRAME}")
        if self._writer.is_closing():
            raise Unavailable(f"connection to {self.peer} closed")
        self._writer.write(len(payload).to_bytes(4, "big") + payload)

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
        if size > MAX_FRAME:
            raise InvalidArgument(f"frame of {size} bytes from {self.peer} is over {MAX_FRAME}")
        try:
            return await self._reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ssl.SSLError):
            raise Unavailable(f"connection to {self.peer} cut inside a frame") from None

    def close(self) -> None:
        """Drop the connection at once (no TLS close_notify wait; see TLSFront.stop)."""
        self._writer.transport.abort()


def client_context(tls: NodeTLS) -> ssl.SSLContext:
    """Mutual TLS to a manager: its certificate must chain to the cluster CA and name
    `swarm-manager` (as gRPC's ssl_target_name_override checks), ours is presented."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=tls.ca_pem.decode())
    ctx.set_alpn_protocols([FRAMES_ALPN])
    load_identity(ctx, tls)
    return ctx


async def open_frames(
    addr: str, ctx: ssl.SSLContext, method: str, timeout: float
) -> FrameConn | None:
    """A framed connection to `addr` for `method`; None when the server does not speak
    frames. Raises Unavailable (unreachable) or FramesRefused."""
    host, _, port = addr.rpartition(":")
    try:
        reader, writer = await timeouts.wait_for(
            asyncio.open_connection(
                host.strip("[]"),
                int(port),
                ssl=ctx,
                server_hostname=MANAGER_SERVER_NAME,
                limit=MAX_FRAME + 4,
            ),
            timeout,
        )
    except (OSError, TimeoutError, ssl.SSLError, ValueError) as exc:
        raise Unavailable(f"manager {addr} unreachable: {exc}") from None
    sslobj = writer.get_extra_info("ssl_object")
    if sslobj is None or sslobj.selected_alpn_protocol() != FRAMES_ALPN:
        writer.transport.abort()
        return None
    tune_socket(writer)
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
        raise FramesRefused(f"rpc error: code = {code} desc = {why}")  # as gRPC's refusals
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
