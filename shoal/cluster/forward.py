"""`Control/Forward`: a follower manager replays an API request on the leader.

swarmkit proxies controlapi calls from followers to the leader; shoal does the same one
level up: the whole Docker API request (method, path with query, headers, body) travels
to the leader, which runs it through its own API handler and sends the response back, so
the client is answered as if the follower had done the work itself. Replaying the request
(rather than shipping the follower's store batch) means every check runs against the
leader's current state. Managers only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec

from shoal.cluster.client import ClusterClient
from shoal.cluster.server import MANAGERS, Caller, ClusterServer
from shoal.errors import Unavailable

__all__ = [
    "FORWARDED_HEADER",
    "NOT_LEADER_HEADER",
    "ForwardEndpoint",
    "ForwardRequest",
    "ForwardResponse",
    "Forwarder",
    "forward",
]

FORWARDED_HEADER = "X-Shoal-Forwarded"  # set on a replayed request: it is never forwarded again
NOT_LEADER_HEADER = "X-Shoal-Not-Leader"  # on the 503 of a replay that met a non-leader


class ForwardRequest(msgspec.Struct):
    method: str
    path: str  # with the query string
    headers: list[tuple[str, str]]
    body: bytes


class ForwardResponse(msgspec.Struct):
    status: int
    headers: list[tuple[str, str]]
    body: bytes


Forwarder = Callable[[ForwardRequest], Awaitable[ForwardResponse]]


class ForwardEndpoint:
    def __init__(self, executor: Callable[[], Forwarder | None]) -> None:
        self._executor = executor

    def register(self, server: ClusterServer) -> None:
        server.add_unary("Control/Forward", ForwardRequest, MANAGERS, self._call)

    async def _call(self, req: ForwardRequest, caller: Caller) -> ForwardResponse:
        executor = self._executor()
        if executor is None:
            raise Unavailable("this manager serves no API to forward to")
        return await executor(req)


async def forward(
    client: ClusterClient, req: ForwardRequest, timeout: float = 120.0
) -> ForwardResponse:
    return await client.call("Control/Forward", req, ForwardResponse, timeout)
