"""The client side of 2377: CA pinning, then mutual-TLS gRPC calls to a manager.

`fetch_root_ca` is the only code that talks to a manager without trusting it: it reads the
certificates the server presents in the TLS handshake (not verified yet) and keeps the one
whose digest is the join token's. From then on every channel verifies the server against
that CA and the server name `swarm-manager` (only manager certificates carry it), and
presents this node's certificate when it has one. gRPC errors become ShoalErrors here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any, Generic, TypeVar

import grpc
import grpc.aio
from cryptography import x509

from shoal import timeouts
from shoal.ca.certs import MANAGER_SERVER_NAME
from shoal.ca.files import NodeTLS
from shoal.ca.root import ca_digest
from shoal.cluster.frames import client_context
from shoal.cluster.server import grpc_options
from shoal.cluster.wire import decoder, encoder
from shoal.errors import InvalidArgument, NotFound, ShoalError, Unavailable

__all__ = ["ClusterClient", "DuplexStream", "OutStream", "fetch_root_ca", "rpc_error"]

T = TypeVar("T")

_REFUSED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
}


def rpc_error(exc: grpc.aio.AioRpcError, addr: str) -> ShoalError:
    code = exc.code()
    details = exc.details() or code.name
    if code in _REFUSED:
        return InvalidArgument(f"rpc error: code = {_go_name(code)} desc = {details}")
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(f"rpc error: code = NotFound desc = {details}")
    return Unavailable(f"manager {addr} unreachable: {_go_name(code)}: {details}")


def _go_name(code: grpc.StatusCode) -> str:
    return "".join(part.capitalize() for part in code.name.split("_"))


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
    for pem in presented:
        pem_bytes = pem.encode() if isinstance(pem, str) else pem
        if _is_ca(pem_bytes) and ca_digest(pem_bytes) == digest:
            return pem_bytes, local_ip
    raise InvalidArgument(
        f"remote CA does not match fingerprint. Expected: {digest} (the manager at {addr} "
        "belongs to another swarm, or the join token is wrong)"
    )


def _is_ca(pem: bytes) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(pem)
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    return bool(constraints.ca) and cert.issuer == cert.subject


class ClusterClient:
    """A channel to one manager. `tls` None: no client certificate (the join only)."""

    def __init__(
        self,
        addr: str,
        ca_pem: bytes,
        tls: NodeTLS | None,
        extra_options: list[tuple[str, Any]] | None = None,
    ) -> None:
        self.addr = addr
        self.tls = tls
        self._frames_ctx: ssl.SSLContext | None = None
        creds = grpc.ssl_channel_credentials(
            root_certificates=ca_pem,
            private_key=tls.key_pem if tls else None,
            certificate_chain=tls.cert_pem if tls else None,
        )
        options = [
            *grpc_options(),
            ("grpc.ssl_target_name_override", MANAGER_SERVER_NAME),
            *(extra_options or []),
        ]
        self._channel = grpc.aio.secure_channel(addr, creds, options=options)
        self._encode = encoder()

    def frames_context(self) -> ssl.SSLContext | None:
        """The TLS context of framed connections to this manager (None without a node
        certificate: framed methods are for members)."""
        if self.tls is None:
            return None
        if self._frames_ctx is None:
            self._frames_ctx = client_context(self.tls)
        return self._frames_ctx

    async def call(
        self, name: str, request: Any, response: type[T], timeout: float = 10.0
    ) -> T:
        method = self._channel.unary_unary(
            f"/shoal.{name}",
            request_serializer=self._encode,
            response_deserializer=decoder(response),  # type: ignore[type-var]
        )
        try:
            return await method(request, timeout=timeout)  # type: ignore[no-any-return]
        except grpc.aio.AioRpcError as exc:
            raise rpc_error(exc, self.addr) from None

    async def stream(self, name: str, request: Any, response: type[T]) -> AsyncIterator[T]:
        method = self._channel.unary_stream(
            f"/shoal.{name}",
            request_serializer=self._encode,
            response_deserializer=decoder(response),  # type: ignore[type-var]
        )
        call = method(request)
        try:
            async for item in call:
                yield item
        except grpc.aio.AioRpcError as exc:
            raise rpc_error(exc, self.addr) from None
        finally:
            call.cancel()

    def client_stream(self, name: str, response: type[T]) -> OutStream:
        """Open a long-lived call that this side streams requests into (no deadline: it
        lives until `cancel()` or until the connection breaks)."""
        method = self._channel.stream_unary(
            f"/shoal.{name}",
            request_serializer=self._encode,
            response_deserializer=decoder(response),  # type: ignore[type-var]
        )
        return OutStream(method(), self.addr)

    def duplex(self, name: str, response: type[T]) -> DuplexStream[T]:
        """Open a long-lived call streaming both ways (no deadline)."""
        method = self._channel.stream_stream(
            f"/shoal.{name}",
            request_serializer=self._encode,
            response_deserializer=decoder(response),  # type: ignore[type-var]
        )
        return DuplexStream(method(), self.addr)

    async def close(self) -> None:
        await self._channel.close()


class OutStream:
    """The writing end of a client-streaming call. `write` returns once gRPC took the
    request (flow control permitting), not when the peer handled it: writes pipeline."""

    def __init__(self, call: Any, addr: str) -> None:
        self._call = call
        self.addr = addr
        self._writing = asyncio.Lock()  # gRPC allows one outstanding write per call


    @property
    def ended(self) -> bool:
        return bool(self._call.done())

    async def write(self, request: Any) -> None:
        try:
            async with self._writing:
                await self._call.write(request)
        except grpc.aio.AioRpcError as exc:
            raise rpc_error(exc, self.addr) from None
        except asyncio.InvalidStateError:
            raise Unavailable(f"manager {self.addr}: stream ended") from None

    def cancel(self) -> None:
        self._call.cancel()


class DuplexStream(OutStream, Generic[T]):
    """Both ends of a call streaming both ways: `write` as `OutStream`, `read` for answers."""

    async def read(self) -> T | None:
        """The next answer; None once the call ended normally. Unavailable (etc.) when it
        broke."""
        try:
            item = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            raise rpc_error(exc, self.addr) from None
        except asyncio.InvalidStateError:
            raise Unavailable(f"manager {self.addr}: stream ended") from None
        if item is grpc.aio.EOF:
            return None
        return item  # type: ignore[no-any-return]
