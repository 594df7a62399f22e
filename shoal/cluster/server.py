"""The 2377 server: gRPC methods behind the TLS front, each with the roles allowed to call it.

Methods are registered with a request type, a handler and the roles that may call it
(`ANYONE` means no certificate is needed: only the join is registered so). The caller's
identity comes from its verified certificate (see tlsfront); a call from a role that is
not allowed is refused with PERMISSION_DENIED (no certificate: UNAUTHENTICATED) before the
handler runs. Handlers raise ShoalError; it is mapped to a gRPC status at this boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from shoal import timeouts
from shoal.ca.certs import NodeIdentity
from shoal.ca.files import NodeTLS, load_identity
from shoal.cluster.frames import FrameConn, tune_socket
from shoal.cluster.tlsfront import PeerTable, TLSFront, server_context
from shoal.cluster.wire import decoder, encoder
from shoal.errors import Conflict, InvalidArgument, NotFound, ShoalError, Unavailable

__all__ = ["ANYONE", "MANAGERS", "MEMBERS", "Caller", "ClusterServer", "grpc_options"]

log = logging.getLogger(__name__)

ANYONE: frozenset[str] = frozenset()
MEMBERS = frozenset({"worker", "manager"})
MANAGERS = frozenset({"manager"})

MAX_MESSAGE = 16 * 1024 * 1024


def grpc_options() -> list[tuple[str, Any]]:
    """Size limits and keepalive shared by both ends (a dead peer is noticed within ~15 s)."""
    return [
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
        ("grpc.keepalive_time_ms", 10_000),
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
        ("grpc.http2.max_ping_strikes", 0),
    ]


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

_STATUS: list[tuple[type[ShoalError], grpc.StatusCode]] = [
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (Conflict, grpc.StatusCode.ALREADY_EXISTS),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
]


def _status_of(exc: ShoalError) -> grpc.StatusCode:
    for kind, code in _STATUS:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.UNKNOWN


class ClusterServer:
    def __init__(
        self, tls: NodeTLS, removed: Callable[[str], bool] = lambda node_id: False
    ) -> None:
        self.tls = tls
        self._removed = removed  # node IDs removed from the swarm: their certificates are void
        self.peers = PeerTable()
        self._cluster_id = tls.identity.cluster_id
        self._services: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
        self._frames: dict[str, tuple[Collection[str], Frames, bool]] = {}
        self.framed: dict[str, int] = {}  # method -> framed connections being served
        self._server: grpc.aio.Server | None = None
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
        """`name` is "Service/Method" (served as /shoal.Service/Method). `removed_ok`: a
        removed node may still call it (Raft's messages: Raft's own membership decides, and
        a manager being removed must answer until its removal commits)."""

        async def behaviour(req: Any, context: grpc.aio.ServicerContext) -> Any:
            caller = await self._authorize(name, roles, context, removed_ok)
            try:
                return await handler(req, caller)
            except ShoalError as exc:
                await context.abort(_status_of(exc), exc.message)

        self._add(name, grpc.unary_unary_rpc_method_handler(
            behaviour, request_deserializer=decoder(request), response_serializer=encoder()
        ))

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

        async def behaviour(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
            caller = await self._authorize(name, roles, context, removed_ok)
            try:
                return await handler(requests, caller)
            except ShoalError as exc:
                await context.abort(_status_of(exc), exc.message)

        self._add(name, grpc.stream_unary_rpc_method_handler(
            behaviour, request_deserializer=decoder(request), response_serializer=encoder()
        ))

    def add_duplex(
        self, name: str, request: type[Any], roles: Collection[str], handler: Duplex
    ) -> None:
        """A method streaming both ways: `handler` reads the caller's requests and yields
        answers, in any order and at any time (pipelining over one long-lived call)."""

        async def behaviour(
            requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Any]:
            caller = await self._authorize(name, roles, context)
            try:
                async for item in handler(requests, caller):
                    yield item
            except ShoalError as exc:
                await context.abort(_status_of(exc), exc.message)

        self._add(name, grpc.stream_stream_rpc_method_handler(
            behaviour, request_deserializer=decoder(request), response_serializer=encoder()
        ))

    def add_stream(
        self, name: str, request: type[Any], roles: Collection[str], handler: Stream
    ) -> None:
        async def behaviour(req: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            caller = await self._authorize(name, roles, context)
            try:
                async for item in handler(req, caller):
                    yield item
            except ShoalError as exc:
                await context.abort(_status_of(exc), exc.message)

        self._add(name, grpc.unary_stream_rpc_method_handler(
            behaviour, request_deserializer=decoder(request), response_serializer=encoder()
        ))

    def add_frames(
        self,
        name: str,
        roles: Collection[str],
        handler: Frames,
        *,
        removed_ok: bool = False,
    ) -> None:
        """`name` served on framed connections (shoal.cluster.frames), authorized like a
        gRPC method: `handler` owns the connection once the hello is accepted."""
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
        if identity is not None and identity.cluster_id != self._cluster_id:
            identity = None  # the CA verified it, so this cannot happen; refuse anyway
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
        """(gRPC code name, why) `identity` may not call `name` (None: it may), as
        `_authorize` decides."""
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

    def _add(self, name: str, handler: grpc.RpcMethodHandler) -> None:
        service, _, method = name.partition("/")
        self._services.setdefault(f"shoal.{service}", {})[method] = handler

    async def _authorize(
        self,
        name: str,
        roles: Collection[str],
        context: grpc.aio.ServicerContext,
        removed_ok: bool = False,
    ) -> Caller:
        peer = context.peer()
        identity = self.peers.lookup(peer)
        if identity is not None and identity.cluster_id != self._cluster_id:
            identity = None  # the CA verified it, so this cannot happen; refuse anyway
        if roles:
            if identity is None:
                log.warning("2377: %s refused to %s: no client certificate", name, peer)
                await context.abort(
                    grpc.StatusCode.UNAUTHENTICATED,
                    f"{name} needs a node certificate of this swarm",
                )
            assert identity is not None
            if identity.role not in roles:
                log.warning(
                    "2377: %s refused to node %s: role %s may not call it",
                    name,
                    identity.node_id,
                    identity.role,
                )
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"permission denied: {name} is not allowed for a {identity.role} node "
                    f"(needs {' or '.join(sorted(roles))})",
                )
            if not removed_ok and self._removed(identity.node_id):
                log.warning("2377: %s refused to node %s: removed", name, identity.node_id)
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"node {identity.node_id} was removed from the swarm",
                )
        return Caller(identity, peer)

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self, host: str, port: int) -> int:
        """Serve on host:port (0: any port); the TLS port."""
        server = grpc.aio.server(options=grpc_options())
        server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(s, m) for s, m in self._services.items()]
        )
        backend = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server = server
        self._front = TLSFront(
            server_context(self.tls), backend, self.peers, frames=self._serve_frames
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
        if self._server is not None:
            await self._server.stop(grace=0.5)
            self._server = None
