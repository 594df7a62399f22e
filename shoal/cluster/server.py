"""The 2377 server: methods behind the TLS front, each with the roles allowed to call it.

Methods are registered with a request type, a handler and the roles that may call it
(`ANYONE` means no certificate is needed: only the join is registered so). They are
served on shoal-rpc/1 connections (shoal.cluster.rpc: calls multiplexed on one TLS
connection per client) and, for the hot paths, on framed connections (`add_frames`,
shoal.cluster.frames); the front (tlsfront) tells them apart by ALPN. The caller's
identity comes from the certificate its connection's handshake verified; a call from a
role that is not allowed is refused with PermissionDenied (no certificate:
Unauthenticated) before the handler runs. Handlers raise ShoalError; it becomes the
call's status (code and message) at this boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Coroutine
from dataclasses import dataclass
from typing import Any

import msgspec

from shoal import timeouts
from shoal.ca.certs import NodeIdentity
from shoal.ca.files import NodeTLS, load_identity
from shoal.cluster.frames import FRAMES_ALPN, FrameConn, tune_socket
from shoal.cluster.rpc import (
    MAX_MESSAGE,
    MAX_RPC_FRAME,
    RPC_ALPN,
    Body,
    ServerCall,
    ServerConn,
    code_of,
)
from shoal.cluster.tlsfront import TLSFront, server_context
from shoal.cluster.wire import decoder, encoder
from shoal.errors import InvalidArgument, ShoalError

__all__ = ["ANYONE", "MANAGERS", "MAX_MESSAGE", "MEMBERS", "Caller", "ClusterServer"]

log = logging.getLogger(__name__)

ANYONE: frozenset[str] = frozenset()
MEMBERS = frozenset({"worker", "manager"})
MANAGERS = frozenset({"manager"})

_WRITE_TIMEOUT = 30.0  # a stream's answer not taken by the peer's socket for this long


@dataclass(frozen=True)
class Caller:
    identity: NodeIdentity | None
    peer: str


Unary = Callable[[Any, Caller], Awaitable[Any]]
Stream = Callable[[Any, Caller], AsyncIterator[Any]]
ClientStream = Callable[[AsyncIterator[Any], Caller], Awaitable[Any]]
Duplex = Callable[[AsyncIterator[Any], Caller], AsyncIterator[Any]]
Frames = Callable[[FrameConn, Caller], Awaitable[None]]

_FRAMES_HELLO_TIMEOUT = 10.0


@dataclass(frozen=True)
class _Method:
    name: str
    shape: str  # "unary", "stream" (answers streamed), "client_stream", "duplex"
    decode: Callable[[Body], Any]
    roles: Collection[str]
    handler: Callable[..., Any]
    removed_ok: bool


class ClusterServer:
    def __init__(
        self, tls: NodeTLS, removed: Callable[[str], bool] = lambda node_id: False
    ) -> None:
        self.tls = tls
        self._removed = removed  # node IDs removed from the swarm: their certificates are void
        self._cluster_id = tls.identity.cluster_id
        self._methods: dict[str, _Method] = {}
        self._frames: dict[str, tuple[Collection[str], Frames, bool]] = {}
        self._encode = encoder()
        self.framed: dict[str, int] = {}  # method -> framed connections being served
        self.connections: set[ServerConn] = set()  # shoal-rpc/1 connections being served
        self._front: TLSFront | None = None
        self.port = 0

    # -- registration -------------------------------------------------------------------
    def add_unary(
        self,
        name: str,
        request: type[Any],
        roles: Collection[str],
        handler: Unary,
        *,
        removed_ok: bool = False,
    ) -> None:
        """`name` is "Service/Method". `removed_ok`: a removed node may still call it
        (Raft's messages: Raft's own membership decides, and a manager being removed must
        answer until its removal commits)."""
        self._add(_Method(name, "unary", decoder(request), roles, handler, removed_ok))

    def add_client_stream(
        self,
        name: str,
        request: type[Any],
        roles: Collection[str],
        handler: ClientStream,
        *,
        removed_ok: bool = False,
    ) -> None:
        """A method whose caller streams requests (one answer at the end): `handler` gets
        them as an async iterator, each decoded strictly like a unary request."""
        self._add(_Method(name, "client_stream", decoder(request), roles, handler, removed_ok))

    def add_duplex(
        self, name: str, request: type[Any], roles: Collection[str], handler: Duplex
    ) -> None:
        """A method streaming both ways: `handler` reads the caller's requests and yields
        answers, in any order and at any time (pipelining over one long-lived call)."""
        self._add(_Method(name, "duplex", decoder(request), roles, handler, False))

    def add_stream(
        self, name: str, request: type[Any], roles: Collection[str], handler: Stream
    ) -> None:
        self._add(_Method(name, "stream", decoder(request), roles, handler, False))

    def _add(self, method: _Method) -> None:
        self._methods[method.name] = method

    def add_frames(
        self,
        name: str,
        roles: Collection[str],
        handler: Frames,
        *,
        removed_ok: bool = False,
    ) -> None:
        """`name` served on framed connections (shoal.cluster.frames), authorized like a
        call: `handler` owns the connection once the hello is accepted."""
        self._frames[name] = (roles, handler, removed_ok)

    async def _serve_frames(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        identity: NodeIdentity | None,
    ) -> None:
        tune_socket(writer)
        conn = FrameConn(reader, writer)
        try:
            hello = await timeouts.wait_for(conn.read(), _FRAMES_HELLO_TIMEOUT)
        except (ShoalError, TimeoutError):
            return
        if hello is None:
            return
        name = hello.decode(errors="replace")
        identity = self._identity(identity)
        entry = self._frames.get(name)
        refusal = (
            ("Unimplemented", f"unknown method {name}")
            if entry is None
            else self._refusal(name, entry[0], identity, entry[2])
        )
        if refusal is not None or entry is None:
            code, why = refusal or ("Unknown", "refused")
            log.warning("2377: framed %s refused to %s: %s", name, conn.peer, why)
            conn.write(f"{code}\n{why}".encode())
            with contextlib.suppress(Exception):
                await timeouts.wait_for(writer.drain(), 1.0)
            return
        conn.write(b"")
        self.framed[name] = self.framed.get(name, 0) + 1
        try:
            await entry[1](conn, Caller(identity, conn.peer))
        except ShoalError as exc:
            log.debug("2377: framed %s from %s ended: %s", name, conn.peer, exc)
        finally:
            self.framed[name] -= 1

    def _refusal(
        self,
        name: str,
        roles: Collection[str],
        identity: NodeIdentity | None,
        removed_ok: bool,
    ) -> tuple[str, str] | None:
        """(status code name, why) `identity` may not call `name` (None: it may)."""
        if not roles:
            return None
        if identity is None:
            return "Unauthenticated", f"{name} needs a node certificate of this swarm"
        if identity.role not in roles:
            return "PermissionDenied", (
                f"permission denied: {name} is not allowed for a {identity.role} node "
                f"(needs {' or '.join(sorted(roles))})"
            )
        if not removed_ok and self._removed(identity.node_id):
            return "PermissionDenied", f"node {identity.node_id} was removed from the swarm"
        return None

    def _identity(self, identity: NodeIdentity | None) -> NodeIdentity | None:
        if identity is not None and identity.cluster_id != self._cluster_id:
            return None  # the CA verified it, so this cannot happen; refuse anyway
        return identity

    # -- shoal-rpc/1 ----------------------------------------------------------------------
    async def _serve_rpc(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        identity: NodeIdentity | None,
    ) -> None:
        tune_socket(writer)
        frames = FrameConn(reader, writer, max_frame=MAX_RPC_FRAME)
        caller = Caller(self._identity(identity), frames.peer)

        def opened(call: ServerCall) -> Coroutine[Any, Any, None] | None:
            method = self._methods.get(call.method)
            if method is None:
                log.warning("2377: unknown method %r called by %s", call.method, caller.peer)
                call.end("Unimplemented", f"unknown method {call.method}")
                return None
            refusal = self._refusal(method.name, method.roles, caller.identity, method.removed_ok)
            if refusal is not None:
                log.warning("2377: %s refused to %s: %s", method.name, _who(caller), refusal[1])
                call.end(*refusal)
                return None
            return self._run(method, call, caller)

        conn = ServerConn(frames, opened)
        self.connections.add(conn)
        try:
            await conn.serve()
        finally:
            self.connections.discard(conn)

    async def _run(self, method: _Method, call: ServerCall, caller: Caller) -> None:
        """Serve one call to its END (a handler cancelled by CANCEL or a lost connection
        ends without one: nobody is there to read it)."""
        try:
            if method.shape in ("unary", "stream"):
                body = await call.requests.get()
                if body is None:
                    raise InvalidArgument(f"{method.name}: no request before the half-close")
                args: Any = _decode(method, body)
            else:
                args = _requests(method, call)
            if method.shape in ("unary", "client_stream"):
                answer = self._encode(await method.handler(args, caller))
                if len(answer) > MAX_MESSAGE:
                    call.end("ResourceExhausted", _too_large(len(answer)))
                else:
                    call.end("OK", last=answer)
                return
            items = method.handler(args, caller)
            try:
                async for item in items:
                    answer = self._encode(item)
                    if len(answer) > MAX_MESSAGE:
                        call.end("ResourceExhausted", _too_large(len(answer)))
                        return
                    await call.send(answer, _WRITE_TIMEOUT)
            finally:  # the handler's own cleanup runs now, also when cancelled
                aclose = getattr(items, "aclose", None)
                if aclose is not None:
                    await aclose()
            call.end("OK")
        except ShoalError as exc:
            call.end(code_of(exc), exc.message)
        except asyncio.CancelledError:
            call.ended = True  # cancelled by the client or the connection's end
            raise
        except Exception as exc:
            log.exception("2377: %s from %s failed", method.name, _who(caller))
            call.end("Unknown", f"Unexpected {type(exc).__name__}: {exc}")

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self, host: str, port: int) -> int:
        """Serve on host:port (0: any port); the TLS port."""
        self._front = TLSFront(
            server_context(self.tls, [RPC_ALPN, FRAMES_ALPN]),
            {RPC_ALPN: self._serve_rpc, FRAMES_ALPN: self._serve_frames},
        )
        try:
            self.port = await self._front.start(host, port)
        except OSError:
            await self.stop()
            raise
        log.info("2377: serving the cluster channel on %s:%d", host, self.port)
        return self.port

    def reload(self, tls: NodeTLS) -> None:
        """Present a renewed certificate from the next handshake on."""
        self.tls = tls
        if self._front is not None:
            load_identity(self._front.ctx, tls)

    async def stop(self) -> None:
        if self._front is not None:
            await self._front.stop()
            self._front = None


def _decode(method: _Method, body: Body) -> Any:
    try:
        return method.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidArgument(f"malformed {method.name} request: {exc}") from None


async def _requests(method: _Method, call: ServerCall) -> AsyncIterator[Any]:
    while (body := await call.requests.get()) is not None:
        request = _decode(method, body)
        yield request


def _too_large(size: int) -> str:
    return f"answer of {size} bytes is over the {MAX_MESSAGE} limit"


def _who(caller: Caller) -> str:
    if caller.identity is None:
        return f"{caller.peer} (no certificate)"
    return f"node {caller.identity.node_id} ({caller.peer})"
