"""The TLS side of 2377: terminates TLS, verifies client certificates, serves by ALPN.

One listener must take joining nodes (no certificate yet) and members (a certificate from
the cluster CA), as Go's `VerifyClientCertIfGiven` does for swarmkit: the handshake is
done with `CERT_OPTIONAL` (a certificate that is given must chain to the cluster CA, else
the handshake fails). The protocol the client chose by ALPN picks the server of the
connection: `shoal-rpc/1` (the calls, shoal.cluster.rpc) or `shoal-frames/1` (Raft's
and forwarding's framed connections, shoal.cluster.frames); each gets the verified
identity of the client's certificate (or None). A connection that chose neither (e.g. a
bare TLS client reading the certificates, as `fetch_root_ca` does) is closed.

The server presents its certificate followed by the root CA, so a joining node can read
the CA from the handshake and pin it against its join token's digest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping

from shoal import timeouts
from shoal.ca.certs import NodeIdentity, identity_of
from shoal.ca.files import NodeTLS, load_identity
from shoal.cluster.frames import READ_LIMIT
from shoal.errors import InvalidArgument

__all__ = ["ConnServer", "TLSFront", "server_context"]

log = logging.getLogger(__name__)

_HANDSHAKE_TIMEOUT = 10.0

# serves a connection of one ALPN protocol, with the verified identity of its client
# certificate (or None)
ConnServer = Callable[
    [asyncio.StreamReader, asyncio.StreamWriter, NodeIdentity | None], Awaitable[None]
]


def server_context(tls: NodeTLS, protocols: list[str]) -> ssl.SSLContext:
    """TLS 1.2+, client certificate optional but verified against the cluster CA if given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.load_verify_locations(cadata=tls.ca_pem.decode())
    ctx.set_alpn_protocols(protocols)
    load_identity(ctx, tls)
    return ctx


class TLSFront:
    def __init__(self, ctx: ssl.SSLContext, servers: Mapping[str, ConnServer]) -> None:
        self.ctx = ctx
        self._servers = dict(servers)
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
            limit=READ_LIMIT,
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
            protocol = sslobj.selected_alpn_protocol() if sslobj is not None else None
            server = self._servers.get(protocol or "")
            if server is not None:
                await server(reader, writer, _peer_identity(writer))
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, OSError) as exc:
            log.debug("2377: connection from %s ended: %s", writer.get_extra_info("peername"), exc)
        except asyncio.CancelledError:
            # stop(): this task is the connection's top; asyncio's callback must not see it.
            # Drop the TCP connection at once: a TLS close waits up to 30 s for the peer's
            # close_notify, and the calls in flight on it would hang that long.
            writer.transport.abort()
        finally:
            self._conns.discard(task)
            writer.close()


def _peer_identity(writer: asyncio.StreamWriter) -> NodeIdentity | None:
    sslobj = writer.get_extra_info("ssl_object")
    der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
    if not der:
        return None
    try:
        return identity_of(der)
    except (InvalidArgument, ValueError):
        return None  # signed by our CA but not a node certificate: no rights
