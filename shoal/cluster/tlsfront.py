"""The TLS side of 2377: terminates TLS, verifies client certificates, hands bytes to gRPC.

Why a front: one listener must take joining nodes (no certificate yet) and members (a
certificate from the cluster CA), as Go's `VerifyClientCertIfGiven` does for swarmkit.
grpcio's Python server can only require a client certificate or not ask for one at all.
So the TLS handshake is done here with `CERT_OPTIONAL` (a certificate that is given must
chain to the cluster CA, else the handshake fails), and the decrypted stream is relayed to
the gRPC server on a loopback port. The relay's source port names the connection: before
a single byte is relayed, `PeerTable` records which identity (or none) that port carries,
and the gRPC handlers look the caller up by `context.peer()`. A local process dialling the
loopback port directly is not in the table and counts as anonymous.

The server presents its certificate followed by the root CA, so a joining node can read
the CA from the handshake and pin it against its join token's digest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable

from shoal import timeouts
from shoal.ca.certs import NodeIdentity, identity_of
from shoal.ca.files import NodeTLS, load_identity
from shoal.cluster.frames import FRAMES_ALPN
from shoal.errors import InvalidArgument

__all__ = ["FramesServer", "PeerTable", "TLSFront", "server_context"]

log = logging.getLogger(__name__)

_CHUNK = 256 * 1024
_HANDSHAKE_TIMEOUT = 10.0

# serves a connection that chose the frames protocol (shoal.cluster.frames), with the
# verified identity of its client certificate (or None)
FramesServer = Callable[
    [asyncio.StreamReader, asyncio.StreamWriter, NodeIdentity | None], Awaitable[None]
]


class PeerTable:
    """Relay source port -> the verified identity of the TLS client behind it (or None)."""

    def __init__(self) -> None:
        self._by_port: dict[int, NodeIdentity | None] = {}

    def add(self, port: int, identity: NodeIdentity | None) -> None:
        self._by_port[port] = identity

    def remove(self, port: int) -> None:
        self._by_port.pop(port, None)

    def lookup(self, peer: str) -> NodeIdentity | None:
        """`peer` as gRPC names it, e.g. "ipv4:127.0.0.1:40312"."""
        host, _, port = peer.rpartition(":")
        if not host.endswith("127.0.0.1") or not port.isdigit():
            return None
        return self._by_port.get(int(port))

    def __len__(self) -> int:
        return len(self._by_port)


def server_context(tls: NodeTLS) -> ssl.SSLContext:
    """TLS 1.2+, client certificate optional but verified against the cluster CA if given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.load_verify_locations(cadata=tls.ca_pem.decode())
    ctx.set_alpn_protocols(["h2", FRAMES_ALPN])
    load_identity(ctx, tls)
    return ctx


class TLSFront:
    def __init__(
        self,
        ctx: ssl.SSLContext,
        backend_port: int,
        peers: PeerTable,
        frames: FramesServer | None = None,
    ) -> None:
        self.ctx = ctx
        self._backend_port = backend_port
        self._peers = peers
        self._frames = frames
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (port 0: any); the port it listens on."""
        self._server = await asyncio.start_server(
            self._serve,
            host,
            port,
            ssl=self.ctx,
            ssl_handshake_timeout=_HANDSHAKE_TIMEOUT,
            reuse_address=True,
        )
        sock = self._server.sockets[0]
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await timeouts.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            sslobj = writer.get_extra_info("ssl_object")
            if (
                self._frames is not None
                and sslobj is not None
                and sslobj.selected_alpn_protocol() == FRAMES_ALPN
            ):
                await self._frames(reader, writer, _peer_identity(writer))
            else:
                await self._relay(reader, writer)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, OSError) as exc:
            log.debug("2377: connection from %s ended: %s", writer.get_extra_info("peername"), exc)
        except asyncio.CancelledError:
            # stop(): this task is the connection's top; asyncio's callback must not see it.
            # Drop the TCP connection at once: a TLS close waits up to 30 s for the peer's
            # close_notify, and gRPC peers only noticed the end at their next keepalive
            # ping (10 s), so their calls in flight hung that long.
            writer.transport.abort()
        finally:
            self._conns.discard(task)
            writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        identity = _peer_identity(writer)
        b_reader, b_writer = await asyncio.open_connection("127.0.0.1", self._backend_port)
        port = int(b_writer.get_extra_info("sockname")[1])
        self._peers.add(port, identity)
        pumps = [
            asyncio.create_task(_pump(reader, b_writer)),
            asyncio.create_task(_pump(b_reader, writer)),
        ]
        try:
            # HTTP/2 does not half-close: whichever side ends first ends the connection
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._peers.remove(port)
            b_writer.close()


def _peer_identity(writer: asyncio.StreamWriter) -> NodeIdentity | None:
    sslobj = writer.get_extra_info("ssl_object")
    der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
    if not der:
        return None
    try:
        return identity_of(der)
    except (InvalidArgument, ValueError):
        return None  # signed by our CA but not a node certificate: no rights


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """Copy until EOF or an error on either side."""
    with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
        while data := await src.read(_CHUNK):
            dst.write(data)
            await dst.drain()
