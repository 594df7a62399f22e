"""The client side of 2377: CA pinning, then calls to a manager over shoal-rpc/1.

`fetch_root_ca` is the only code that talks to a manager without trusting it: it reads the
certificates the server presents in the TLS handshake (not verified yet) and keeps the one
whose digest is the join token's. From then on every connection verifies the server
against that CA and the server name `swarm-manager` (only manager certificates carry it),
and presents this node's certificate when it has one.

A `ClusterClient` is one TLS connection (ALPN shoal-rpc/1, shoal.cluster.rpc) on which
all its calls run at once. It is opened by the first call and again by the first call
after it broke; calls in flight on a connection that breaks fail with Unavailable, and a
call while the manager is unreachable fails at once (refused) or when its connection
attempt times out, never waits for the manager to come back. A call's status becomes a
ShoalError here (`rpc_error`), with the texts gRPC's had: "rpc error: code = <Code> desc
= <message>" for refusals, as Go's gRPC prints them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

import msgspec

from shoal import timeouts
from shoal.ca.files import NodeTLS
from shoal.cluster.frames import FrameConn, client_context, connect_tls
from shoal.cluster.rpc import (
    MAX_MESSAGE,
    MAX_RPC_FRAME,
    RPC_ALPN,
    Body,
    ClientCall,
    ClientConn,
)
from shoal.cluster.wire import decoder, encoder
from shoal.errors import InvalidArgument, NotFound, ShoalError, Unavailable

__all__ = ["ClusterClient", "DuplexStream", "OutStream", "fetch_root_ca", "rpc_error"]

T = TypeVar("T")

_REFUSED = {
    "InvalidArgument",
    "PermissionDenied",
    "Unauthenticated",
    "FailedPrecondition",
    "AlreadyExists",
}
_CONNECT_TIMEOUT = 10.0  # a stream's connection (unary calls: their own timeout)
_WRITE_TIMEOUT = 30.0  # a stream's write not taken by the socket for this long: broken


def rpc_error(code: str, details: str, addr: str) -> ShoalError:
    """The ShoalError of a call that ended with status `code` (a gRPC code name as Go
    prints it: "InvalidArgument", "Unavailable", ...)."""
    details = details or code
    if code in _REFUSED:
        return InvalidArgument(f"rpc error: code = {code} desc = {details}")
    if code == "NotFound":
        return NotFound(f"rpc error: code = NotFound desc = {details}")
    return Unavailable(f"manager {addr} unreachable: {code}: {details}")


async def fetch_root_ca(addr: str, digest: str, timeout: float = 10.0) -> tuple[bytes, str]:
    """The root CA `addr` presents, if its digest is `digest` (the join token's), and the
    local address this node reached `addr` from."""
    host, _, port = addr.rpartition(":")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # nothing is trusted yet: the digest decides below
    try:
        _, writer = await timeouts.wait_for(
            asyncio.open_connection(host, int(port), ssl=ctx), timeout
        )
    except (OSError, TimeoutError, ssl.SSLError, ValueError) as exc:
        raise Unavailable(f"could not reach a manager at {addr}: {exc}") from None
    try:
        local_ip = str(writer.get_extra_info("sockname")[0])
        sslobj = writer.get_extra_info("ssl_object")
        # Python 3.13 has SSLSocket.get_unverified_chain(); 3.11 has it on the C object.
        chain = sslobj._sslobj.get_unverified_chain() or []
        presented = [c.public_bytes(0x01) for c in chain]  # _ssl.ENCODING_PEM
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    from shoal.ca.root import ca_digest

    for pem in presented:
        pem_bytes = pem.encode() if isinstance(pem, str) else pem
        if _is_ca(pem_bytes) and ca_digest(pem_bytes) == digest:
            return pem_bytes, local_ip
    raise InvalidArgument(
        f"remote CA does not match fingerprint. Expected: {digest} (the manager at {addr} "
        "belongs to another swarm, or the join token is wrong)"
    )


def _is_ca(pem: bytes) -> bool:
    from cryptography import x509  # the join only: not loaded by a daemon that has joined

    try:
        cert = x509.load_pem_x509_certificate(pem)
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    return bool(constraints.ca) and cert.issuer == cert.subject


class ClusterClient:
    """A channel to one manager. `tls` None: no client certificate (the join only)."""

    def __init__(self, addr: str, ca_pem: bytes, tls: NodeTLS | None) -> None:
        self.addr = addr
        self.tls = tls
        self._ca_pem = ca_pem
        self._ctx: ssl.SSLContext | None = None
        self._frames_ctx: ssl.SSLContext | None = None
        self._conn: ClientConn | None = None
        self._connecting: asyncio.Task[ClientConn] | None = None
        self._closed = False
        self._encode = encoder()

    def frames_context(self) -> ssl.SSLContext | None:
        """The TLS context of framed connections to this manager (None without a node
        certificate: framed methods are for members)."""
        if self.tls is None:
            return None
        if self._frames_ctx is None:
            self._frames_ctx = client_context(self.tls)
        return self._frames_ctx

    # -- the connection -----------------------------------------------------------------
    async def _connection(self, timeout: float) -> ClientConn:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        if self._closed:
            raise Unavailable(f"manager {self.addr}: channel closed")
        task = self._connecting
        if task is None:  # concurrent first calls share one attempt
            task = self._connecting = asyncio.create_task(self._connect())
            task.add_done_callback(_retrieve)
        try:
            return await timeouts.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            raise Unavailable(
                f"manager {self.addr} unreachable: DeadlineExceeded: "
                f"no connection within {timeout:g} s"
            ) from None
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if task.cancelled() and not (me is not None and me.cancelling()):
                # close() stopped the attempt: not this caller's own cancellation
                raise Unavailable(f"manager {self.addr}: channel closed") from None
            raise

    async def _connect(self) -> ClientConn:
        try:
            if self._ctx is None:
                self._ctx = client_context(self.tls, self._ca_pem, RPC_ALPN)
            reader, writer = await connect_tls(self.addr, self._ctx, _CONNECT_TIMEOUT)
            sslobj = writer.get_extra_info("ssl_object")
            if sslobj is None or sslobj.selected_alpn_protocol() != RPC_ALPN:
                writer.transport.abort()
                raise Unavailable(f"manager {self.addr} unreachable: it speaks no {RPC_ALPN}")
            conn = ClientConn(FrameConn(reader, writer, max_frame=MAX_RPC_FRAME), self.addr)
            if self._closed:
                await conn.close()
                raise Unavailable(f"manager {self.addr}: channel closed")
            self._conn = conn
            return conn
        finally:
            self._connecting = None

    def _open(self, conn: ClientConn, name: str, body: bytes | None) -> ClientCall:
        try:
            return conn.open(name, body)
        except ShoalError as exc:
            raise rpc_error("Unavailable", exc.message, self.addr) from None

    def _request(self, request: Any) -> bytes:
        body = self._encode(request)
        if len(body) > MAX_MESSAGE:
            raise rpc_error(
                "ResourceExhausted",
                f"request of {len(body)} bytes is over the {MAX_MESSAGE} limit",
                self.addr,
            )
        return body

    def _answer(self, decode: Callable[[Body], T], body: Body, call: ClientCall) -> T:
        try:
            return decode(body)
        except msgspec.DecodeError as exc:
            call.cancel()
            raise InvalidArgument(f"malformed answer from manager {self.addr}: {exc}") from None

    def _ended(self, call: ClientCall) -> ShoalError | None:
        """The error a call ended with, None if it ended OK."""
        code, message = call.status or ("Unknown", "")
        return None if code == "OK" else rpc_error(code, message, self.addr)

    # -- calls --------------------------------------------------------------------------
    async def call(
        self, name: str, request: Any, response: type[T], timeout: float = 10.0
    ) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        body = self._request(request)
        conn = await self._connection(timeout)
        call = self._open(conn, name, body)
        try:
            answer = await timeouts.wait_for(call.read(), max(deadline - loop.time(), 0.0))
        except TimeoutError:
            call.cancel()
            raise rpc_error("DeadlineExceeded", "Deadline Exceeded", self.addr) from None
        except BaseException:
            call.cancel()
            raise
        if answer is None:
            raise self._ended(call) or rpc_error("Internal", "no answer", self.addr)
        return self._answer(decoder(response), answer, call)  # type: ignore[type-var]

    async def stream(self, name: str, request: Any, response: type[T]) -> AsyncIterator[T]:
        decode = decoder(response)  # type: ignore[type-var]
        body = self._request(request)
        conn = await self._connection(_CONNECT_TIMEOUT)
        call = self._open(conn, name, body)
        try:
            while (item := await call.read()) is not None:
                yield self._answer(decode, item, call)
            error = self._ended(call)
            if error is not None:
                raise error
        finally:
            call.cancel()

    def client_stream(self, name: str, response: type[T]) -> OutStream:
        """Open a long-lived call that this side streams requests into (no deadline: it
        lives until `cancel()` or until the connection breaks)."""
        return OutStream(self, name, decoder(response))

    def duplex(self, name: str, response: type[T]) -> DuplexStream[T]:
        """Open a long-lived call streaming both ways (no deadline)."""
        return DuplexStream(self, name, decoder(response))

    async def close(self) -> None:
        """Close the connection; calls in flight fail with Unavailable."""
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


def _retrieve(task: asyncio.Task[Any]) -> None:
    """A connection attempt nobody waits for any more: its error is not an error."""
    if not task.cancelled():
        task.exception()


class OutStream:
    """The writing end of a client-streaming call, opened by the first `write`. `write`
    returns once the request is queued for the socket (waiting only while more than
    1 MiB is buffered), not when the peer handled it: writes pipeline."""

    def __init__(self, client: ClusterClient, name: str, decode: Callable[[Body], Any]) -> None:
        self._client = client
        self._name = name
        self._decode = decode
        self.addr = client.addr
        self._call: ClientCall | None = None
        self._cancelled = False

    @property
    def ended(self) -> bool:
        return self._cancelled or (self._call is not None and self._call.ended)

    async def _ensure(self) -> ClientCall:
        if self._call is None:
            if self._cancelled:
                raise Unavailable(f"manager {self.addr}: stream ended")
            conn = await self._client._connection(_CONNECT_TIMEOUT)
            if self._call is None:  # (a concurrent first write may have opened it)
                if self._cancelled:
                    raise Unavailable(f"manager {self.addr}: stream ended")
                self._call = self._client._open(conn, self._name, None)
        return self._call

    async def write(self, request: Any) -> None:
        body = self._client._request(request)
        call = await self._ensure()
        if call.ended:
            raise self._client._ended(call) or Unavailable(f"manager {self.addr}: stream ended")
        try:
            await call.write(body, _WRITE_TIMEOUT)
        except ShoalError as exc:
            call.cancel()
            raise rpc_error("Unavailable", exc.message, self.addr) from None

    async def done_writing(self) -> None:
        """Half-close: no more requests (the server's handler sees its iterator end)."""
        (await self._ensure()).half_close()

    def cancel(self) -> None:
        self._cancelled = True
        if self._call is not None:
            self._call.cancel()


class DuplexStream(OutStream, Generic[T]):
    """Both ends of a call streaming both ways: `write` as `OutStream`, `read` for answers."""

    async def read(self) -> T | None:
        """The next answer; None once the call ended normally. Unavailable (etc.) when it
        broke."""
        call = await self._ensure()
        item = await call.read()
        if item is None:
            error = self._client._ended(call)
            if error is not None:
                raise error
            return None
        return self._client._answer(self._decode, item, call)  # type: ignore[no-any-return]
