"""`Control/Forward`: a follower manager replays an API request on the leader.

swarmkit proxies controlapi calls from followers to the leader; shoal does the same one
level up: the whole Docker API request (method, path with query, headers, body) travels
to the leader, which runs it through its own API handler and sends the response back, so
the client is answered as if the follower had done the work itself. Replaying the request
(rather than shipping the follower's store batch) means every check runs against the
leader's current state. Managers only.

Requests travel over ONE long-lived duplex call per leader (`Control/ForwardStream`):
the follower writes numbered requests, the leader runs them concurrently and writes each
answer back with its number as soon as it is ready. A unary gRPC call costs ~0.6-0.85 ms
of CPU on this machine's Python (both ends, through the TLS front), a streamed message
~0.14 ms; under 64 concurrent clients that was the forwarding path's bound. A broken
stream fails the requests in flight with `Unavailable` (their outcome is unknown, as with
a unary call whose connection broke) and the next request opens a new one.
`Control/Forward` (one unary call per request) is still served.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec

from shoal.cluster.client import ClusterClient, DuplexStream
from shoal.cluster.server import MANAGERS, Caller, ClusterServer
from shoal.errors import InvalidArgument, NotFound, ShoalError, Unavailable

log = logging.getLogger(__name__)

__all__ = [
    "FORWARDED_HEADER",
    "NOT_LEADER_HEADER",
    "ForwardChannel",
    "ForwardEndpoint",
    "ForwardFrame",
    "ForwardReply",
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


class ForwardFrame(msgspec.Struct, array_like=True):
    id: int  # chosen by the follower, unique within its stream
    request: ForwardRequest


class ForwardReply(msgspec.Struct, array_like=True):
    id: int
    response: ForwardResponse | None  # None: `error` says why the leader could not run it
    error: str = ""


Forwarder = Callable[[ForwardRequest], Awaitable[ForwardResponse]]


class ForwardEndpoint:
    def __init__(self, executor: Callable[[], Forwarder | None]) -> None:
        self._executor = executor

    def register(self, server: ClusterServer) -> None:
        server.add_unary("Control/Forward", ForwardRequest, MANAGERS, self._call)
        server.add_duplex("Control/ForwardStream", ForwardFrame, MANAGERS, self._stream)

    async def _call(self, req: ForwardRequest, caller: Caller) -> ForwardResponse:
        executor = self._executor()
        if executor is None:
            raise Unavailable("this manager serves no API to forward to")
        return await executor(req)

    async def _one(self, frame: ForwardFrame, replies: asyncio.Queue[ForwardReply | None]) -> None:
        try:
            response = await self._call(frame.request, _NO_CALLER)
            reply = ForwardReply(frame.id, response)
        except ShoalError as exc:
            reply = ForwardReply(frame.id, None, exc.message)
        except Exception as exc:  # an API twin fault must not end the other requests
            log.warning("2377: forwarded %s failed: %r", frame.request.path, exc)
            reply = ForwardReply(frame.id, None, f"forwarded request failed: {exc!r}")
        replies.put_nowait(reply)

    async def _stream(
        self, frames: AsyncIterator[ForwardFrame], caller: Caller
    ) -> AsyncIterator[ForwardReply]:
        replies: asyncio.Queue[ForwardReply | None] = asyncio.Queue()

        async def read() -> None:
            try:
                async with asyncio.TaskGroup() as tg:
                    async for frame in frames:
                        tg.create_task(self._one(frame, replies))
            finally:
                replies.put_nowait(None)  # the caller stopped writing: answer, then end

        reader = asyncio.create_task(read())
        try:
            while (reply := await replies.get()) is not None:
                yield reply
        finally:  # the call is over (or broke): requests still running are cancelled
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


_NO_CALLER = Caller(None, "")


class ForwardChannel:
    """The follower's end of `Control/ForwardStream` to one manager (see the module)."""

    def __init__(self, client: ClusterClient) -> None:
        self._client = client
        self._ids = itertools.count(1)
        self._stream: DuplexStream[ForwardReply] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[ForwardResponse]] = {}

    def _open(self) -> DuplexStream[ForwardReply]:
        if self._stream is None or self._stream.ended:
            stream = self._client.duplex("Control/ForwardStream", ForwardReply)
            self._stream = stream
            self._reader = asyncio.create_task(self._read(stream), name="forward-replies")
        return self._stream

    async def _read(self, stream: DuplexStream[ForwardReply]) -> None:
        error: ShoalError = Unavailable(f"manager {self._client.addr}: forward stream ended")
        try:
            while (reply := await stream.read()) is not None:
                fut = self._pending.pop(reply.id, None)
                if fut is None or fut.done():
                    continue  # its caller gave up
                if reply.response is None:
                    fut.set_exception(Unavailable(reply.error))
                else:
                    fut.set_result(reply.response)
        except ShoalError as exc:  # broken (Unavailable) or refused (e.g. PermissionDenied)
            error = exc
        finally:
            if self._stream is stream:
                self._stream = None
            stream.cancel()
            pending, self._pending = self._pending, {}
            for fut in pending.values():
                if not fut.done():
                    fut.set_exception(_copy(error))

    async def call(self, req: ForwardRequest, timeout: float) -> ForwardResponse:
        stream = self._open()
        rid = next(self._ids)
        fut: asyncio.Future[ForwardResponse] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            await stream.write(ForwardFrame(rid, req))
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise Unavailable(f"manager {self._client.addr}: forward timed out") from None
        finally:
            self._pending.pop(rid, None)


def _copy(error: ShoalError) -> ShoalError:
    kind = type(error) if type(error) in (InvalidArgument, NotFound, Unavailable) else Unavailable
    return kind(error.message)


_channels: weakref.WeakKeyDictionary[ClusterClient, ForwardChannel] = (
    weakref.WeakKeyDictionary()
)


async def forward(
    client: ClusterClient, req: ForwardRequest, timeout: float = 120.0
) -> ForwardResponse:
    """Replay `req` on the manager behind `client`, over its one forwarding stream."""
    channel = _channels.get(client)
    if channel is None:
        channel = _channels[client] = ForwardChannel(client)
    return await channel.call(req, timeout)
