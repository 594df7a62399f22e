"""`Control/Forward`: a follower manager replays an API request on the leader.

swarmkit proxies controlapi calls from followers to the leader; shoal does the same one
level up: the whole Docker API request (method, path with query, headers, body) travels
to the leader, which runs it through its own API handler and sends the response back, so
the client is answered as if the follower had done the work itself. Replaying the request
(rather than shipping the follower's store batch) means every check runs against the
leader's current state. Managers only.

Requests travel over ONE long-lived duplex call per leader (`Control/ForwardStream`):
the follower writes numbered requests, the leader runs them concurrently and writes the
answers back with their numbers as they are ready; each side writes everything queued
since its previous write as one message (`ForwardFrames` / `ForwardReplies`; under gRPC,
which took one outstanding write per call at a few ms each under load, one write per
request queued 64 clients behind each other). A broken stream fails the requests in
flight with `Unavailable` (their outcome is unknown, as with a unary call whose
connection broke) and the next request opens a new one. The stream is a framed
connection (shoal/cluster/frames.py: TLS served by the front itself; a write is a length
prefix into the socket). `Control/Forward` (one unary call per request) is still served.

The same stream carries the write handlers' control API calls (shoal/httpapi/control.py):
a `ForwardRequest` with the method `CONTROL`, the operation's name as its path (e.g.
`secret.create`), no headers and the msgpack-encoded arguments as its body. The leader
runs the controlapi function on its store, without any HTTP: 200 and the msgpack-encoded
result, or the error's HTTP status, `X-Shoal-Error: <class>` and its message as the body;
`NotLeader` answers 503 with `X-Shoal-Not-Leader` like a replayed request. `CONTROL` is no
HTTP method a client can send through the replay (its path does not start with `/`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec

from shoal import timeouts
from shoal.cluster.client import ClusterClient
from shoal.cluster.frames import FrameConn, FramedDuplex, open_frames
from shoal.cluster.server import MANAGERS, Caller, ClusterServer
from shoal.errors import InvalidArgument, NotFound, ShoalError, Unavailable

log = logging.getLogger(__name__)

__all__ = [
    "CONTROL_METHOD",
    "ERROR_HEADER",
    "FORWARDED_HEADER",
    "NOT_LEADER_HEADER",
    "ForwardChannel",
    "ForwardEndpoint",
    "ForwardFrame",
    "ForwardFrames",
    "ForwardReplies",
    "ForwardReply",
    "ForwardRequest",
    "ForwardResponse",
    "Forwarder",
    "forward",
]

FORWARDED_HEADER = "X-Shoal-Forwarded"  # set on a replayed request: it is never forwarded again
NOT_LEADER_HEADER = "X-Shoal-Not-Leader"  # on the 503 of a replay that met a non-leader
CONTROL_METHOD = "CONTROL"  # a control API call (shoal/httpapi/control.py), not an HTTP request
ERROR_HEADER = "X-Shoal-Error"  # a control call's error class (shoal.errors)


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


class ForwardFrames(msgspec.Struct, array_like=True):
    """One message of the stream: every request queued since the last write."""

    frames: list[ForwardFrame]


class ForwardReplies(msgspec.Struct, array_like=True):
    replies: list[ForwardReply]


Forwarder = Callable[[ForwardRequest], Awaitable[ForwardResponse]]


class ForwardEndpoint:
    def __init__(self, executor: Callable[[], Forwarder | None]) -> None:
        self._executor = executor

    def register(self, server: ClusterServer) -> None:
        server.add_unary("Control/Forward", ForwardRequest, MANAGERS, self._call)
        server.add_frames("Control/ForwardStream", MANAGERS, self._frames)

    async def _frames(self, conn: FrameConn, caller: Caller) -> None:
        """`Control/ForwardStream` on a framed connection: `ForwardFrames` in, each request
        run as its own task, `ForwardReplies` out as the answers are ready (`_Replies`)."""
        replies = _Replies(conn)

        async def batches() -> AsyncIterator[ForwardFrames]:
            while True:
                await conn.drain(_WRITE_TIMEOUT)  # a caller that reads no answers gets no more read
                frame = await conn.read()
                if frame is None:
                    return
                try:
                    yield _decode_frames(frame)
                except msgspec.DecodeError as exc:
                    raise InvalidArgument(f"malformed forward frames: {exc}") from None

        try:
            async with asyncio.TaskGroup() as tg:
                async for batch in batches():
                    for frame in batch.frames:
                        tg.create_task(self._one(frame, replies.send))
        except* (ShoalError, OSError) as group:  # broken or refused: the call is over
            log.debug("2377: forward stream from %s ended: %r", conn.peer, group.exceptions)
        replies.flush()  # the caller stopped writing: every request is answered, then the end

    async def _call(self, req: ForwardRequest, caller: Caller) -> ForwardResponse:
        executor = self._executor()
        if executor is None:
            raise Unavailable("this manager serves no API to forward to")
        return await executor(req)

    async def _one(self, frame: ForwardFrame, send: Callable[[ForwardReply], None]) -> None:
        try:
            response = await self._call(frame.request, _NO_CALLER)
            reply = ForwardReply(frame.id, response)
        except ShoalError as exc:
            reply = ForwardReply(frame.id, None, exc.message)
        except Exception as exc:  # an API twin fault must not end the other requests
            log.warning("2377: forwarded %s failed: %r", frame.request.path, exc)
            reply = ForwardReply(frame.id, None, f"forwarded request failed: {exc!r}")
        send(reply)


class _Replies:
    """The leader's answers on one stream. The first answer ready in a turn of the event
    loop is written at once, from the task that ran its request: through a queue read by
    another task it waited behind everything the commit had woken (the store's watchers),
    ~0.2-0.3 ms at 1 client. The answers ready after it in the same turn (a commit group's)
    join one write at the start of the next turn."""

    def __init__(self, conn: FrameConn) -> None:
        self._conn = conn
        self._later: list[ForwardReply] | None = None  # not None: a write is scheduled

    def send(self, reply: ForwardReply) -> None:
        if self._later is not None:
            self._later.append(reply)
            return
        self._later = []
        asyncio.get_running_loop().call_soon(self.flush)
        self._write([reply])

    def flush(self) -> None:
        later, self._later = self._later, None
        if later:
            self._write(later)

    def _write(self, replies: list[ForwardReply]) -> None:
        try:
            self._conn.write(_encode(ForwardReplies(replies)))
        except ShoalError as exc:  # the connection is gone: the caller fails what it sent
            log.debug("2377: %d forward answers to %s lost: %s", len(replies),
                      self._conn.peer, exc.message)


_NO_CALLER = Caller(None, "")
_encode = msgspec.msgpack.Encoder().encode
_decode_frames = msgspec.msgpack.Decoder(ForwardFrames).decode
_WRITE_TIMEOUT = 30.0
_OPEN_TIMEOUT = 5.0

Stream = FramedDuplex[ForwardReplies]


class ForwardChannel:
    """The follower's end of `Control/ForwardStream` to one manager (see the module).
    Each call (stream) has its own outbox: a request queued for a call that broke fails
    with it, never goes out on the next one (its caller may have retried meanwhile)."""

    def __init__(self, client: ClusterClient) -> None:
        self._client = client
        self._ids = itertools.count(1)
        self._stream: Stream | None = None
        self._outbox: asyncio.Queue[ForwardFrame | None] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: dict[int, tuple[object, asyncio.Future[ForwardResponse]]] = {}
        self._opening = asyncio.Lock()

    async def _open(self) -> tuple[Stream, asyncio.Queue[ForwardFrame | None]]:
        if self._stream is not None and not self._stream.ended:
            return self._stream, self._outbox
        async with self._opening:  # concurrent first requests open one call
            if self._stream is not None and not self._stream.ended:
                return self._stream, self._outbox
            return self._start(await self._connect())

    async def _connect(self) -> Stream:
        ctx = self._client.frames_context()
        if ctx is None:
            raise Unavailable("forwarding needs this manager's node certificate")
        conn = await open_frames(self._client.addr, ctx, "Control/ForwardStream", _OPEN_TIMEOUT)
        return FramedDuplex(conn, ForwardReplies, _WRITE_TIMEOUT)

    def _start(self, stream: Stream) -> tuple[Stream, asyncio.Queue[ForwardFrame | None]]:
        outbox: asyncio.Queue[ForwardFrame | None] = asyncio.Queue()
        self._stream, self._outbox = stream, outbox
        for coro in (self._read(stream, outbox), self._write(stream, outbox)):
            task = asyncio.create_task(coro, name="forward-stream")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return stream, outbox

    async def _write(
        self, stream: Stream, outbox: asyncio.Queue[ForwardFrame | None]
    ) -> None:
        try:
            while (first := await outbox.get()) is not None:
                frames = [first]
                while not outbox.empty():
                    frame = outbox.get_nowait()
                    if frame is None:
                        return  # the call ended: the reader failed these requests
                    frames.append(frame)
                await stream.write(ForwardFrames(frames))  # all queued, one write
        except ShoalError:
            stream.cancel()  # the reader fails what is pending on it

    async def _read(
        self, stream: Stream, outbox: asyncio.Queue[ForwardFrame | None]
    ) -> None:
        error: ShoalError = Unavailable(f"manager {self._client.addr}: forward stream ended")
        try:
            while (batch := await stream.read()) is not None:
                for reply in batch.replies:
                    got = self._pending.pop(reply.id, None)
                    if got is None or got[1].done():
                        continue  # its caller gave up
                    if reply.response is None:
                        got[1].set_exception(Unavailable(reply.error))
                    else:
                        got[1].set_result(reply.response)
        except ShoalError as exc:  # broken (Unavailable) or refused (e.g. PermissionDenied)
            error = exc
        finally:
            if self._stream is stream:
                self._stream = None
            stream.cancel()
            outbox.put_nowait(None)  # the writer stops
            for rid, (on, fut) in list(self._pending.items()):
                if on is stream:
                    del self._pending[rid]
                    if not fut.done():
                        fut.set_exception(_copy(error))

    async def call(self, req: ForwardRequest, timeout: float) -> ForwardResponse:
        stream, outbox = await self._open()
        rid = next(self._ids)
        fut: asyncio.Future[ForwardResponse] = asyncio.get_running_loop().create_future()
        self._pending[rid] = (stream, fut)
        outbox.put_nowait(ForwardFrame(rid, req))
        try:
            return await timeouts.wait_for(fut, timeout)
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
