"""TCP side of the userspace mesh: one listening socket per published port, one relay (two
protocol objects, one per socket) per accepted connection.

Invariants:
* A connection is accepted, its reading paused, and a backend is picked from the pool
  *at that moment*; if the connect fails or times out (`connect_timeout`), the next
  backend is tried once; none left, or the pool empty: the client gets a reset at once.
* A backend removed from the pool while a connect to it was in flight is dropped before a
  byte reaches it and another is picked: after `Pool.update` returns, no connection is
  established to a removed backend. Connections already relayed to it go on until they end.
* Flow control both ways: when one socket's send buffer is over its high-water mark, the
  other socket stops being read (`pause_writing` -> `pause_reading`), so a slow reader
  never makes the proxy buffer without bound.
* Half-close is relayed: EOF from one side is a `write_eof` (FIN) to the other; the relay
  closes when both sides have sent EOF, or at once (reset) when either side resets.
* With PROXY protocol on, the backend's first bytes are a v2 header naming the client and
  the address:port it connected to.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import cast

from shoal.mesh.errors import MeshError
from shoal.mesh.proxyv2 import header_for
from shoal.mesh.userspace.config import Backend, ListenerSpec, Pool

__all__ = ["TcpListener"]

log = logging.getLogger(__name__)

MAX_FAILURES = 2  # the picked backend, then the next one once
MAX_ATTEMPTS = 4  # also bounds re-picks after a backend left during the connect
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


def _reset(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass
    transport.abort()


class _Half(asyncio.Protocol):
    """One socket of a relayed connection; what it receives is written to `peer`."""

    def __init__(self, relay: _Relay, client: bool) -> None:
        self.relay = relay
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.peer: _Half | None = None
        self.eof = False
        self.early = bytearray()  # bytes that arrived before the other side existed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self.client:
            self.relay.accepted()

    def data_received(self, data: bytes) -> None:
        self.relay.listener.bytes += len(data)
        peer = self.peer
        if peer is None:
            self.early += data
        elif peer.transport is not None and not peer.transport.is_closing():
            peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is None or peer.transport is None or peer.transport.is_closing():
            return False
        if peer.eof:  # both directions are done
            peer.transport.close()
            return False
        peer.transport.write_eof()
        return True  # keep this socket open: the other direction still flows

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.lost(self, exc)

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _Relay:
    """One client connection and, once connected, its backend connection."""

    def __init__(self, listener: TcpListener) -> None:
        self.listener = listener
        self.client = _Half(self, client=True)
        self.backend: _Half | None = None
        self.task: asyncio.Task[None] | None = None

    def accepted(self) -> None:
        transport = self.client.transport
        assert transport is not None
        if not len(self.listener.pool):
            _reset(transport)  # refused: no ready endpoint
            return
        transport.pause_reading()
        self.listener.relays.add(self)
        self.task = asyncio.get_running_loop().create_task(self._connect())
        self.task.add_done_callback(self._done)

    async def _connect(self) -> None:
        listener = self.listener
        tried: set[Backend] = set()
        failures = attempts = 0
        while failures < MAX_FAILURES and attempts < MAX_ATTEMPTS:
            attempts += 1
            backend = listener.pool.pick(tried)
            if backend is None:
                break
            half = _Half(self, client=False)
            try:
                await self._open(half, backend)
            except (OSError, TimeoutError) as exc:
                failures += 1
                tried.add(backend)
                listener.connect_failed(backend, exc)
                continue
            if backend not in listener.pool:  # left while we were connecting
                assert half.transport is not None
                half.transport.abort()
                tried.add(backend)
                continue
            listener.connect_succeeded(backend)
            self._link(half)
            return
        if self.client.transport is not None:
            _reset(self.client.transport)

    async def _open(self, half: _Half, backend: Backend) -> None:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.listener.connect_timeout):
            await loop.create_connection(lambda: half, backend[0], backend[1])

    @staticmethod
    def _done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("mesh: relay setup failed", exc_info=task.exception())

    def _link(self, half: _Half) -> None:
        client, backend = self.client, half
        assert client.transport is not None and backend.transport is not None
        if client.transport.is_closing():
            backend.transport.abort()
            return
        self.backend, client.peer, backend.peer = backend, backend, client
        self.listener.connections += 1
        if self.listener.proxy_protocol:
            peer = client.transport.get_extra_info("peername")
            local = client.transport.get_extra_info("sockname")
            backend.transport.write(header_for("tcp", peer[:2], local[:2]))
        for one, other in ((client, backend), (backend, client)):
            if one.early:
                assert other.transport is not None
                other.transport.write(bytes(one.early))
                one.early.clear()
        client.transport.resume_reading()

    def lost(self, half: _Half, exc: Exception | None) -> None:
        if half.client:
            if self.task is not None and not self.task.done():
                self.task.cancel()
            self.listener.relays.discard(self)
        other = self.backend if half.client else self.client
        if other is not None and other.transport is not None and not other.transport.is_closing():
            if exc is None:
                other.transport.close()  # flushes what is still buffered
            else:
                other.transport.abort()

    def abort(self) -> None:
        for half in (self.client, self.backend):
            if half is not None and half.transport is not None:
                half.transport.abort()
        if self.task is not None:
            self.task.cancel()


class TcpListener:
    """A published TCP port: accepts, balances over `pool`, relays. See the module docstring."""

    protocol = "tcp"

    def __init__(self, spec: ListenerSpec, *, connect_timeout: float, backlog: int) -> None:
        self.published = spec.published
        self.service_id = spec.service_id
        self.pool = Pool(spec.target, spec.backends)
        self.proxy_protocol = spec.proxy_protocol
        self.connect_timeout = connect_timeout
        self.relays: set[_Relay] = set()
        self.server: asyncio.Server | None = None
        self._backlog = backlog
        self._failing: set[Backend] = set()
        self.connections = 0  # connections relayed to a backend, since the port opened
        self.bytes = 0  # payload relayed, both directions

    async def open(self, host: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            self.server = await loop.create_server(
                lambda: _Relay(self).client, host, self.published,
                reuse_address=True, backlog=self._backlog,
            )
        except OSError as exc:
            raise MeshError(
                f"mesh: cannot listen on tcp/{self.published} (is the published port in use "
                f"by another program on this node?): {exc.strerror or exc}"
            ) from exc

    def update(self, spec: ListenerSpec) -> None:
        self.pool.update(spec.target, spec.backends)
        self.service_id, self.proxy_protocol = spec.service_id, spec.proxy_protocol

    def close(self, *, abort: bool = False) -> None:
        """Stop accepting. Relayed connections go on until they end, unless `abort`."""
        if self.server is not None:
            self.server.close()
            self.server = None
        if abort:
            for relay in list(self.relays):
                relay.abort()
            self.relays.clear()

    def connect_failed(self, backend: Backend, exc: BaseException) -> None:
        if backend not in self._failing:  # once per backend until it answers again
            self._failing.add(backend)
            why = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            log.warning("mesh: tcp/%d: backend %s:%d of service %s: %s; trying another",
                        self.published, backend[0], backend[1], self.service_id, why)

    def connect_succeeded(self, backend: Backend) -> None:
        self._failing.discard(backend)
