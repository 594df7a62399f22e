"""The 2377 methods that carry Raft between managers: `Raft/Stream`, `Raft/Send`, `Raft/Join`.

* `Raft/Stream`: one long-lived framed connection (shoal.cluster.frames) per (sender,
  receiver) pair into which the sender writes envelopes (below) one after another, without
  waiting for an answer per batch: messages pipeline and keep their order. When it ends
  (the sender's process or host is gone, or it rebuilt its connection) the receiver is
  told which node's stream ended, so a follower notices its leader's death at once
  rather than after an election timeout.
* `Raft/Send`: a batch of Raft messages (the core's msgpack frames) from one manager to
  another, wrapped in an envelope that also says where the sender's 2377 listens (so a
  new member can answer before its store knows any address). The handler gets the
  sender's node ID from its certificate; the Raft layer checks that every message claims
  to come from that node's Raft ID.
* `Raft/Join`: a manager that just joined (it has a manager certificate) asks the leader
  to add it to the Raft cluster as a learner; the answer lists the current members.

Only manager certificates may call them: a worker's is refused before the handler runs.
Until the Raft driver registers its handlers, calls are answered Unavailable.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import msgspec

from shoal.cluster.client import ClusterClient
from shoal.cluster.frames import FrameConn
from shoal.cluster.server import MANAGERS, Caller, ClusterServer
from shoal.cluster.wire import RaftRequest, RaftResponse
from shoal.errors import InvalidArgument, Unavailable

__all__ = [
    "RaftEndpoint",
    "RaftEnvelope",
    "RaftHandler",
    "RaftJoinHandler",
    "RaftJoinRequest",
    "RaftJoinResponse",
    "RaftLostHandler",
    "RaftMember",
    "encode_envelope",
    "join_raft",
    "send_raft",
]


class RaftEnvelope(msgspec.Struct, array_like=True):
    addr: str  # the sender's advertised 2377 "ip:port"
    frames: list[bytes]  # one encoded Raft message each


class RaftMember(msgspec.Struct, array_like=True):
    raft_id: int
    node_id: str
    addr: str


class RaftJoinRequest(msgspec.Struct):
    addr: str  # where the joining manager's 2377 listens
    gossip_addr: str = ""  # where its gossip listens (recorded in its Node like a worker's)


class RaftJoinResponse(msgspec.Struct):
    members: list[RaftMember]


# (envelope, sender node ID) -> None; (sender node ID, its 2377, its gossip) -> members
RaftHandler = Callable[[RaftEnvelope, str], Awaitable[None]]
RaftJoinHandler = Callable[[str, str, str], Awaitable[list[RaftMember]]]
RaftLostHandler = Callable[[str], None]  # the sender node ID whose stream ended

log = logging.getLogger(__name__)

_encode = msgspec.msgpack.Encoder().encode
_decode_envelope = msgspec.msgpack.Decoder(RaftEnvelope).decode


def encode_envelope(envelope: RaftEnvelope) -> bytes:
    return _encode(envelope)


class RaftEndpoint:
    def __init__(self) -> None:
        self._handler: RaftHandler | None = None
        self._lost: RaftLostHandler | None = None
        self._join: RaftJoinHandler | None = None

    def set_handler(
        self, handler: RaftHandler | None, lost: RaftLostHandler | None = None
    ) -> None:
        self._handler = handler
        self._lost = lost

    def set_join_handler(self, handler: RaftJoinHandler | None) -> None:
        self._join = handler

    def register(self, server: ClusterServer) -> None:
        server.add_unary("Raft/Send", RaftRequest, MANAGERS, self._send, removed_ok=True)
        server.add_frames("Raft/Stream", MANAGERS, self._frames, removed_ok=True)
        server.add_unary("Raft/Join", RaftJoinRequest, MANAGERS, self._join_call)

    async def _send(self, req: RaftRequest, caller: Caller) -> RaftResponse:
        if self._handler is None:
            raise Unavailable("raft is not running on this manager")
        assert caller.identity is not None
        try:
            envelope = _decode_envelope(req.messages)
        except msgspec.DecodeError as exc:
            raise InvalidArgument(f"malformed raft envelope: {exc}") from None
        await self._handler(envelope, caller.identity.node_id)
        return RaftResponse()

    async def _frames(self, conn: FrameConn, caller: Caller) -> None:
        """`Raft/Stream` on a framed connection: each frame one encoded envelope."""
        assert caller.identity is not None
        sender = caller.identity.node_id
        try:
            while (frame := await conn.read()) is not None:
                await self._deliver(frame, sender)
        finally:  # also when the connection broke or the front stopped
            self._ended(sender)

    async def _deliver(self, data: bytes, sender: str) -> None:
        handler = self._handler
        if handler is None:
            raise Unavailable("raft is not running on this manager")
        try:
            envelope = _decode_envelope(data)
        except msgspec.DecodeError as exc:
            # one bad envelope ends the stream (the sender reopens it): no guessing
            # where the next good one starts is needed, and nothing was applied
            raise InvalidArgument(f"malformed raft envelope: {exc}") from None
        await handler(envelope, sender)

    def _ended(self, sender: str) -> None:
        lost = self._lost
        if lost is not None:
            try:
                lost(sender)
            except Exception as exc:  # never mask the stream's own outcome
                log.warning("raft: stream-lost handler failed for %s: %r", sender, exc)

    async def _join_call(self, req: RaftJoinRequest, caller: Caller) -> RaftJoinResponse:
        if self._join is None:
            raise Unavailable("raft is not running on this manager")
        assert caller.identity is not None
        members = await self._join(caller.identity.node_id, req.addr, req.gossip_addr)
        return RaftJoinResponse(members)


async def send_raft(client: ClusterClient, messages: bytes, timeout: float = 5.0) -> bytes:
    """Deliver an encoded `RaftEnvelope` to the manager behind `client`."""
    response = await client.call("Raft/Send", RaftRequest(messages), RaftResponse, timeout)
    return response.messages


async def join_raft(
    client: ClusterClient, addr: str, gossip_addr: str = "", timeout: float = 10.0
) -> list[RaftMember]:
    request = RaftJoinRequest(addr, gossip_addr)
    response = await client.call("Raft/Join", request, RaftJoinResponse, timeout)
    return response.members
