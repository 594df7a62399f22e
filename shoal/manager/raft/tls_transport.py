"""The Raft `Transport` over 2377: one long-lived `Raft/Stream` per peer, mutual TLS.

Contract (shoal/manager/raft/transport.py): the driver makes one `send` call at a time
per peer; each writes one envelope into the peer's stream and returns once it is queued,
without waiting for the peer (pipelined, in order: no round trip per batch as with the
former one `Raft/Send` call each). The stream is a framed connection to the peer's 2377
(shoal/cluster/frames.py: TLS with ALPN shoal-frames/1, served by the TLS front itself;
a write is a length prefix into the socket's buffer). `send` never raises: a peer
without a known address, or whose stream fails, is reported unreachable
(Raft retries by itself) and the stream is opened again by the next send. A batch
holding a SNAP goes by a unary `Raft/Send` with a long deadline instead, so its outcome
(delivered to the peer's driver or not) is known and reported with `report_snapshot`; it
may overtake appends still in the stream, which Raft tolerates (a follower rejects what
does not fit, the leader probes).

Addresses: a peer's 2377 address is the one it last put in an envelope it sent us (the
freshest: a restarted manager may listen elsewhere), else the one the store has in its
node's ManagerStatus.Addr (`addr_of`). One framed connection and one ClusterClient
(shoal-rpc/1, for snapshots) per peer, both opened again when the address or this
node's certificate changes, and by the next send after they broke (no backoff: a manager
that restarts is reached again by the first send after it listens).

Receiving (`RaftReceiver`): the sender's node ID comes from its certificate; every
message must claim that node's Raft ID as its sender, or it is dropped with a log line.
When a sender's stream ends, `on_lost(raft ID)` is told (the driver forgets a leader
whose stream broke, so a follower sees a killed leader at once, not after a timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable

from shoal.ca.files import NodeTLS
from shoal.cluster.client import ClusterClient
from shoal.cluster.frames import FrameConn, client_context, open_frames
from shoal.cluster.raft import RaftEnvelope, encode_envelope, send_raft
from shoal.errors import ShoalError
from shoal.manager.raft.ids import raft_id
from shoal.manager.raft.transport import MessageReceiver, PeerReporter
from shoal.raft import (
    Message,
    MessageDecodeError,
    MessageType,
    decode_message,
    encode_message,
)
from shoal.raft.messages import DEFAULT_MAX_DECODE_BYTES

__all__ = ["RaftReceiver", "RaftTransport"]

log = logging.getLogger(__name__)


class RaftTransport:
    def __init__(
        self,
        own_addr: Callable[[], str],
        tls: Callable[[], NodeTLS],
        addr_of: Callable[[int], str | None],
        *,
        timeout: float = 2.0,
        snapshot_timeout: float = 30.0,
    ) -> None:
        self._own_addr = own_addr
        self._tls = tls
        self._addr_of = addr_of
        self._timeout = timeout
        self._snapshot_timeout = snapshot_timeout
        self._reporter: PeerReporter | None = None
        self._learned: dict[int, str] = {}
        self._clients: dict[int, tuple[str, bytes, ClusterClient]] = {}
        self._conns: dict[int, tuple[str, bytes, FrameConn]] = {}
        self._ctx: tuple[bytes, ssl.SSLContext] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def bind(self, reporter: PeerReporter) -> None:
        self._reporter = reporter

    def learn(self, peer: int, addr: str) -> None:
        """`peer` listens at `addr` (from its envelope or a join answer)."""
        if addr:
            self._learned[peer] = addr

    def address(self, peer: int) -> str | None:
        return self._learned.get(peer) or self._addr_of(peer)

    async def send(self, to: int, messages: list[Message]) -> None:
        snaps = sum(1 for m in messages if m.type is MessageType.SNAP)
        ok = await self._deliver(to, messages, self._snapshot_timeout if snaps else self._timeout)
        reporter = self._reporter
        if reporter is None:
            return
        if not ok:
            reporter.report_unreachable(to)
        for _ in range(snaps):
            reporter.report_snapshot(to, ok)

    def send_now(self, to: int, messages: list[Message]) -> bool:
        """Write `messages` to `to` at once if that needs no wait: its framed connection is
        up (same address, same certificate) and not backed up, no snapshot among them.
        False (nothing written): the caller sends them with `send` instead."""
        known = self._conns.get(to)
        if known is None or any(m.type is MessageType.SNAP for m in messages):
            return False
        addr, cert, conn = known
        if conn.ended or not conn.writable or addr != self.address(to):
            return False
        if cert != self._tls().cert_pem:
            return False
        envelope = encode_envelope(
            RaftEnvelope(self._own_addr(), [encode_message(m) for m in messages])
        )
        try:
            conn.write(envelope)
        except ShoalError:
            return False  # nothing written: `send` opens the connection again
        return True

    async def _deliver(self, to: int, messages: list[Message], timeout: float) -> bool:
        envelope = encode_envelope(
            RaftEnvelope(self._own_addr(), [encode_message(m) for m in messages])
        )
        if not any(m.type is MessageType.SNAP for m in messages):
            return await self._deliver_framed(to, envelope, timeout)
        try:
            client = self._client(to)
        except ShoalError as exc:  # e.g. no certificate yet
            log.debug("raft transport: no channel to %x: %s", to, exc)
            return False
        if client is None:
            return False
        try:
            await send_raft(client, envelope, timeout)
        except ShoalError as exc:
            log.debug("raft transport: %d message(s) to %x lost: %s", len(messages), to, exc)
            return False
        return True

    async def _deliver_framed(self, to: int, envelope: bytes, timeout: float) -> bool:
        """Over the framed connection to `to`: delivered (True) or lost (False)."""
        addr = self.address(to)
        if not addr:
            return False
        try:
            conn = await self._frame_conn(to, addr, timeout)
            conn.write(envelope)
            await conn.drain(timeout)
        except ShoalError as exc:
            log.debug("raft transport: envelope to %x lost: %s", to, exc)
            self._drop_conn(to)
            return False
        return True

    async def _frame_conn(self, peer: int, addr: str, timeout: float) -> FrameConn:
        tls = self._tls()
        known = self._conns.get(peer)
        if known is not None:
            if known[0] == addr and known[1] == tls.cert_pem and not known[2].ended:
                return known[2]
            self._drop_conn(peer)
        if self._ctx is None or self._ctx[0] != tls.cert_pem:
            self._ctx = (tls.cert_pem, client_context(tls))
        conn = await open_frames(addr, self._ctx[1], "Raft/Stream", timeout)
        self._conns[peer] = (addr, tls.cert_pem, conn)
        return conn

    def _drop_conn(self, peer: int) -> None:
        known = self._conns.pop(peer, None)
        if known is not None:
            known[2].close()

    def _client(self, peer: int) -> ClusterClient | None:
        addr = self.address(peer)
        if not addr:
            return None
        tls = self._tls()
        known = self._clients.get(peer)
        if known is not None and known[0] == addr and known[1] == tls.cert_pem:
            return known[2]
        if known is not None:
            self._close_later(known[2])
        client = ClusterClient(addr, tls.ca_pem, tls)
        self._clients[peer] = (addr, tls.cert_pem, client)
        return client

    def _close_later(self, client: ClusterClient) -> None:
        task = asyncio.ensure_future(client.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        for peer in list(self._conns):
            self._drop_conn(peer)
        clients, self._clients = self._clients, {}
        for _, _, client in clients.values():
            with contextlib.suppress(Exception):
                await client.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


class RaftReceiver:
    """The `Raft/Stream` and `Raft/Send` handler: checks senders, decodes frames, feeds
    the driver; `lost` is the endpoint's stream-ended hook."""

    def __init__(
        self,
        node: MessageReceiver,
        transport: RaftTransport,
        max_bytes: int = DEFAULT_MAX_DECODE_BYTES,
        *,
        on_lost: Callable[[int], None] | None = None,
    ) -> None:
        self._node = node
        self._transport = transport
        self._max = max_bytes
        self._on_lost = on_lost

    def lost(self, sender: str) -> None:
        if self._on_lost is not None:
            self._on_lost(raft_id(sender))

    async def __call__(self, envelope: RaftEnvelope, sender: str) -> None:
        rid = raft_id(sender)
        self._transport.learn(rid, envelope.addr)
        messages: list[Message] = []
        for frame in envelope.frames:
            try:
                m = decode_message(frame, max_size=self._max)
            except MessageDecodeError as exc:
                log.warning("raft: dropped a malformed frame from node %s: %s", sender, exc)
                continue
            if m.from_ != rid:
                log.warning(
                    "raft: dropped %s claiming to be from %x, sent by node %s (%x)",
                    m.type.name, m.from_, sender, rid,
                )
                continue
            messages.append(m)
        if messages:
            await self._node.receive(messages)
