"""`Raft.Send`: the 2377 method that carries Raft messages between managers.

The Raft driver (shoal/manager/raft) registers a handler; until it does, calls are answered
UNAVAILABLE. Only manager certificates may call it: a worker's certificate is refused
before the handler runs. Messages are opaque bytes here (the Raft codec owns their shape);
the handler gets the sender's node ID from its certificate and may answer with bytes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from shoal.cluster.client import ClusterClient
from shoal.cluster.server import MANAGERS, Caller, ClusterServer
from shoal.cluster.wire import RaftRequest, RaftResponse
from shoal.errors import Unavailable

__all__ = ["RaftEndpoint", "RaftHandler", "send_raft"]

RaftHandler = Callable[[bytes, str], Awaitable[bytes]]  # (messages, sender node ID) -> reply


class RaftEndpoint:
    def __init__(self) -> None:
        self._handler: RaftHandler | None = None

    def set_handler(self, handler: RaftHandler | None) -> None:
        self._handler = handler

    def register(self, server: ClusterServer) -> None:
        server.add_unary("Raft/Send", RaftRequest, MANAGERS, self._send)

    async def _send(self, req: RaftRequest, caller: Caller) -> RaftResponse:
        if self._handler is None:
            raise Unavailable("raft is not running on this manager")
        assert caller.identity is not None
        return RaftResponse(await self._handler(req.messages, caller.identity.node_id))


async def send_raft(client: ClusterClient, messages: bytes, timeout: float = 5.0) -> bytes:
    """Deliver `messages` to the manager behind `client`; its reply."""
    response = await client.call("Raft/Send", RaftRequest(messages), RaftResponse, timeout)
    return response.messages
