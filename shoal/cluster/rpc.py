"""shoal-rpc/1: the 2377 calls, multiplexed on one TLS connection per client.

A client (shoal.cluster.client.ClusterClient) holds one TLS connection to a manager's 2377
(ALPN `RPC_ALPN`; the front serves it itself, see tlsfront.py) and runs every call on it
at once: a worker's session stream, its status reports and heartbeats share it. Both ends
write frames as framed connections do (shoal/cluster/frames.py: a 4-byte big-endian
length, then that many bytes); a frame's payload here is

    call id   4 bytes, big-endian: chosen by the client, 1, 2, 3... on each connection
    kind      1 byte (below)
    body      the rest

    kind      sent by  body
    OPEN   1  client   the method name, "Service/Method"; the id must be above every
                       earlier one on the connection
    MSG    2  either   one message: msgpack of the method's request or response struct
    HALF   3  client   empty: no more requests on this call (client-streaming, duplex)
    END    4  server   "<code>\\n<message>": the call is over. code "OK" or a gRPC status
                       name as Go prints it (InvalidArgument, PermissionDenied, ...)
    CANCEL 5  client   empty: the client gave up; the server cancels the call's handler
                       and sends nothing more for it

    unary            OPEN MSG ->   (one write)      <- MSG END      (or END <error>)
    server-stream    OPEN MSG ->   (one write)      <- MSG ... END
    client-stream    OPEN, MSG ..., HALF ->         <- MSG END      (when the handler returns)
    duplex           OPEN, MSG ... (HALF) ->        <- MSG ... END

Rules:

* Authorization is per call, at OPEN, by the certificate the connection's handshake
  verified (shoal.cluster.server); a refused call gets END with the refusal, the
  connection stays (a worker's refused call does not cut its session).
* A message is at most `MAX_MESSAGE` (16 MiB, Raft snapshots travel on unary Raft/Send);
  a sender refuses a larger one itself (ResourceExhausted), a receiver treats a larger
  frame as a broken peer.
* Bad input from the peer: a frame shorter than 5 bytes, an unknown kind, a kind the
  sender may not send, an oversized frame, OPEN with an id not above the last one, a
  frame for an id never opened: the connection is closed with one log line (its calls
  end: Unavailable on the client, handlers cancelled on the server). A frame for a call
  that was opened and has ended here is dropped without a word (a CANCEL crossing an
  END, a request written while the server ended the call). A MSG that does not decode to
  the method's type ends that call only, with InvalidArgument.
* The connection ends (closed, reset, keepalive gave up): every call on it ends. The
  client opens a new connection for the next call; nothing is retried by itself.
* Backpressure: a writer waits while more than 1 MiB is buffered for the socket
  (FrameConn.drain). There is no per-call flow control on reading: a message is read as
  soon as it arrives and queued for its call (2377's receivers consume as they read).
* No pings: TCP keepalive (10 s idle, 5 s probes) and a 15 s user timeout notice a
  vanished peer (frames.tune_socket); an idle connection costs no wake-ups.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from shoal.cluster.frames import FrameConn
from shoal.errors import Conflict, InvalidArgument, NotFound, ShoalError, Unavailable

__all__ = [
    "CANCEL",
    "END",
    "HALF",
    "MAX_MESSAGE",
    "MAX_RPC_FRAME",
    "MSG",
    "OPEN",
    "RPC_ALPN",
    "Body",
    "ClientCall",
    "ClientConn",
    "ProtocolError",
    "ServerCall",
    "ServerConn",
    "code_of",
    "end_body",
    "head",
    "pack",
    "parse_end",
    "unpack",
]

log = logging.getLogger(__name__)

RPC_ALPN = "shoal-rpc/1"
MAX_MESSAGE = 16 * 1024 * 1024
_HEADER = 5
MAX_RPC_FRAME = MAX_MESSAGE + _HEADER

OPEN, MSG, HALF, END, CANCEL = 1, 2, 3, 4, 5
_KINDS = {OPEN: "OPEN", MSG: "MSG", HALF: "HALF", END: "END", CANCEL: "CANCEL"}


class ProtocolError(Exception):
    """The peer broke the protocol: the connection is closed."""


Body = bytes | memoryview  # a received body is a view into its frame (not copied)


def head(call_id: int, kind: int) -> bytes:
    return call_id.to_bytes(4, "big") + bytes((kind,))


def pack(call_id: int, kind: int, body: bytes = b"") -> bytes:
    return head(call_id, kind) + body


def unpack(frame: bytes) -> tuple[int, int, memoryview]:
    if len(frame) < _HEADER:
        raise ProtocolError(f"frame of {len(frame)} bytes: shorter than its header")
    kind = frame[4]
    if kind not in _KINDS:
        raise ProtocolError(f"frame of unknown kind {kind}")
    return int.from_bytes(frame[:4], "big"), kind, memoryview(frame)[_HEADER:]


def end_body(code: str, message: str) -> bytes:
    return f"{code}\n{message}".encode()


def parse_end(body: Body) -> tuple[str, str]:
    code, _, message = bytes(body).decode(errors="replace").partition("\n")
    return code or "Unknown", message


_CODES: list[tuple[type[ShoalError], str]] = [
    (InvalidArgument, "InvalidArgument"),
    (NotFound, "NotFound"),
    (Conflict, "AlreadyExists"),
    (Unavailable, "Unavailable"),
]


def code_of(exc: ShoalError) -> str:
    """The status a handler's ShoalError ends its call with (as gRPC's were)."""
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    return "Unknown"


# -- the client's end ---------------------------------------------------------------------
class ClientCall:
    """One call on a ClientConn: `read` the server's messages (None once it ended, then
    `status` says how), `write` requests, `half_close`, `cancel`."""

    def __init__(self, conn: ClientConn, call_id: int) -> None:
        self.id = call_id
        self._conn = conn
        self._inbox: asyncio.Queue[Body | None] = asyncio.Queue()
        self.status: tuple[str, str] | None = None  # (code, message) once ended

    @property
    def ended(self) -> bool:
        return self.status is not None

    def _deliver(self, body: Body) -> None:
        self._inbox.put_nowait(body)

    def _finish(self, code: str, message: str) -> None:
        if self.status is None:
            self.status = (code, message)
            self._inbox.put_nowait(None)

    async def read(self) -> Body | None:
        item = await self._inbox.get()
        if item is None:
            self._inbox.put_nowait(None)  # every later read sees the end too
        return item

    async def write(self, body: bytes, timeout: float | None = None) -> None:
        if self.status is not None:
            raise Unavailable(f"call ended: {self.status[0]}: {self.status[1]}")
        self._conn.send(head(self.id, MSG), body)
        await self._conn.frames.drain(timeout)

    def half_close(self) -> None:
        if self.status is None:
            self._conn.send(head(self.id, HALF))

    def cancel(self) -> None:
        """Give up on the call (nothing happens if it already ended)."""
        if self.status is not None:
            return
        self._finish("Cancelled", "call cancelled")
        if self._conn.forget(self.id):
            with contextlib.suppress(ShoalError):
                self._conn.send(head(self.id, CANCEL))


class ClientConn:
    """The client's end of one shoal-rpc/1 connection (see the module)."""

    def __init__(self, frames: FrameConn, addr: str) -> None:
        self.frames = frames
        self.addr = addr
        self.closed = False
        self._calls: dict[int, ClientCall] = {}
        self._next = 1
        self._reader = asyncio.create_task(self._read(), name=f"rpc-client {addr}")

    def __len__(self) -> int:
        return len(self._calls)

    def open(self, method: str, first: bytes | None = None) -> ClientCall:
        """A new call of `method`; `first`: its request, written with the OPEN."""
        if self.closed:
            raise Unavailable("connection closed")
        call = ClientCall(self, self._next)
        self._next += 1
        frames = [(head(call.id, OPEN), method.encode())]
        if first is not None:
            frames.append((head(call.id, MSG), first))
        self.frames.write_parts(frames)
        self._calls[call.id] = call
        return call

    def send(self, frame_head: bytes, body: bytes = b"") -> None:
        if self.closed:
            raise Unavailable("connection closed")
        self.frames.write_parts([(frame_head, body)])

    def forget(self, call_id: int) -> bool:
        """Stop routing frames to `call_id`; whether it was still routed."""
        return self._calls.pop(call_id, None) is not None

    async def _read(self) -> None:
        reason = "connection closed by the manager"
        try:
            while (frame := await self.frames.read()) is not None:
                call_id, kind, body = unpack(frame)
                if call_id >= self._next:
                    raise ProtocolError(f"{_KINDS[kind]} for call {call_id}, never opened")
                call = self._calls.get(call_id)
                if call is None:
                    continue  # ended here (cancelled): whatever still comes is dropped
                if kind == MSG:
                    call._deliver(body)
                elif kind == END:
                    del self._calls[call_id]
                    call._finish(*parse_end(body))
                else:
                    raise ProtocolError(f"{_KINDS[kind]} from a server")
        except ProtocolError as exc:
            reason = f"protocol error: {exc}"
            log.warning("2377: closed the connection to %s: %s", self.addr, reason)
        except InvalidArgument as exc:  # an oversized frame
            reason = exc.message
            log.warning("2377: closed the connection to %s: %s", self.addr, reason)
        except ShoalError as exc:
            reason = exc.message
        finally:
            self._close(reason)

    def _close(self, reason: str) -> None:
        self.closed = True
        self.frames.close()
        calls, self._calls = self._calls, {}
        for call in calls.values():
            call._finish("Unavailable", reason)

    async def close(self) -> None:
        self._close("connection closed by this client")
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


# -- the server's end ---------------------------------------------------------------------
class ServerCall:
    """One call on a ServerConn, as its handler sees it: `requests` (bodies, None after
    HALF), `send` (MSG), `end` (END, once)."""

    def __init__(self, conn: ServerConn, call_id: int, method: str) -> None:
        self.id = call_id
        self.method = method
        self.conn = conn
        self.requests: asyncio.Queue[Body | None] = asyncio.Queue()
        self.ended = False

    async def send(self, body: bytes, timeout: float | None = None) -> None:
        self.conn.frames.write_parts([(head(self.id, MSG), body)])
        await self.conn.frames.drain(timeout)

    def end(self, code: str, message: str = "", last: bytes | None = None) -> None:
        """END the call (after `last` as its final MSG, in the same write)."""
        if self.ended:
            return
        self.ended = True
        self.conn.done(self.id)
        frames = [(head(self.id, END), end_body(code, message))]
        if last is not None:
            frames.insert(0, (head(self.id, MSG), last))
        with contextlib.suppress(ShoalError):  # the connection is gone: nobody to tell
            self.conn.frames.write_parts(frames)


# opened(call): the coroutine that serves it, or None when OPEN was answered (refused)
Opener = Callable[[ServerCall], Coroutine[Any, Any, None] | None]


class ServerConn:
    """The server's end of one shoal-rpc/1 connection: reads frames, starts a task per
    call (`opened`), routes requests to it, cancels it on CANCEL or when the connection
    ends."""

    def __init__(self, frames: FrameConn, opened: Opener) -> None:
        self.frames = frames
        self.peer = frames.peer
        self._opened = opened
        self._last = 0
        self._calls: dict[int, tuple[ServerCall, asyncio.Task[None]]] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def done(self, call_id: int) -> None:
        self._calls.pop(call_id, None)

    async def serve(self) -> None:
        try:
            while (frame := await self.frames.read()) is not None:
                self._take(*unpack(frame))
        except ProtocolError as exc:
            log.warning("2377: closed the connection from %s: protocol error: %s", self.peer, exc)
        except InvalidArgument as exc:  # an oversized frame
            log.warning("2377: closed the connection from %s: %s", self.peer, exc.message)
        except Unavailable as exc:
            log.debug("2377: connection from %s ended: %s", self.peer, exc.message)
        finally:
            self.frames.close()
            calls, self._calls = self._calls, {}
            tasks = [task for _, task in calls.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _take(self, call_id: int, kind: int, body: memoryview) -> None:
        if kind == OPEN:
            if call_id <= self._last:
                raise ProtocolError(f"OPEN of call {call_id} after call {self._last}")
            self._last = call_id
            try:
                method = bytes(body).decode()
            except UnicodeDecodeError:
                raise ProtocolError("OPEN with a method name that is not UTF-8") from None
            call = ServerCall(self, call_id, method)
            serving = self._opened(call)
            if serving is not None:  # (None: refused, END written)
                self._calls[call_id] = (call, asyncio.create_task(serving))
            return
        if kind not in (MSG, HALF, CANCEL):
            raise ProtocolError(f"{_KINDS[kind]} from a client")
        if call_id > self._last:
            raise ProtocolError(f"{_KINDS[kind]} for call {call_id}, never opened")
        known = self._calls.get(call_id)
        if known is None:
            return  # ended here already: dropped
        call, task = known
        if kind == MSG:
            call.requests.put_nowait(body)
        elif kind == HALF:
            call.requests.put_nowait(None)
        else:  # CANCEL: the client is gone from this call, tell it nothing more
            call.ended = True
            del self._calls[call_id]
            task.cancel()
