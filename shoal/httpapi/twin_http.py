"""HTTP/1.1 to the leader's private twin API (forwarded requests), on kept-alive unix sockets.

The twin is shoal's own aiohttp server (`forwarding.ForwardReplayer`) on a root-only socket,
so the exchange needs only what that server sends: a status line, headers, then a body
framed by `Content-Length`, by chunked coding, or by the connection's end; interim 1xx
answers are skipped. A connection goes back to the pool after a whole response unless
either side said `Connection: close`; one that broke mid-exchange is dropped and the
request fails with Unavailable (the caller's outcome is unknown, as for any forward).

Header names and values, the method and the path come from another manager's request:
anything that could split the request (CR, LF, NUL; a space in the target) is refused
with InvalidArgument before a byte is sent.
"""

from __future__ import annotations

import asyncio
import re

from shoal import http11
from shoal.errors import InvalidArgument, Unavailable

__all__ = ["TwinPool"]

_MAX_HEAD = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024
_MAX_IDLE = 64  # kept-alive connections beyond this are closed after use
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

Headers = list[tuple[str, str]]


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.transport.abort()


class TwinPool:
    def __init__(self, path: str) -> None:
        self._path = path
        self._idle: list[_Conn] = []
        self._closed = False

    def close(self) -> None:
        self._closed = True
        for conn in self._idle:
            conn.close()
        self._idle.clear()

    async def request(
        self, method: str, path: str, headers: Headers, body: bytes
    ) -> tuple[int, Headers, bytes]:
        """(status, headers, body) of the twin's answer to one request."""
        head = _request_head(method, path, headers, len(body))
        conn = await self._take()
        try:
            conn.writer.write(head + body if body else head)
            status, out, payload, keep = await _read_response(conn.reader, method)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError) as exc:
            conn.close()
            raise Unavailable(f"the leader's API twin: {exc or type(exc).__name__}") from None
        except BaseException:
            conn.close()  # cancelled mid-exchange: the connection's state is unknown
            raise
        if keep and not self._closed and len(self._idle) < _MAX_IDLE:
            self._idle.append(conn)
        else:
            conn.close()
        return status, out, payload

    async def _take(self) -> _Conn:
        if self._closed:
            raise Unavailable("this manager's API is not serving")
        while self._idle:
            conn = self._idle.pop()
            if not conn.writer.is_closing() and not conn.reader.at_eof():
                return conn
            conn.close()
        try:
            reader, writer = await asyncio.open_unix_connection(self._path, limit=_MAX_HEAD)
        except OSError as exc:
            raise Unavailable(f"the leader's API twin is not reachable: {exc}") from None
        return _Conn(reader, writer)


def _request_head(method: str, path: str, headers: Headers, length: int) -> bytes:
    if not _TOKEN.match(method):
        raise InvalidArgument(f"forwarded request: bad method {method!r}")
    if not path.startswith("/") or " " in path or http11.unsafe(path):
        raise InvalidArgument(f"forwarded request: bad target {path!r}")
    lines = [f"{method} {path} HTTP/1.1", "Host: leader"]
    for name, value in headers:
        if not _TOKEN.match(name) or http11.unsafe(value):
            raise InvalidArgument(f"forwarded request: bad header {name!r}")
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_response(
    reader: asyncio.StreamReader, method: str
) -> tuple[int, Headers, bytes, bool]:
    """(status, headers, body, connection reusable)."""
    version, status, headers = await _read_head(reader)
    while http11.is_interim(status):  # 100 Continue
        version, status, headers = await _read_head(reader)
    lower = {k.lower(): v for k, v in headers}
    length, chunked, closes = http11.body_framing(method, version, status, lower)
    if chunked:
        return status, headers, await _read_chunked(reader), not closes
    if length is not None:
        if length > _MAX_BODY:
            raise ValueError(f"body of {length} bytes")
        return status, headers, await reader.readexactly(length), not closes
    body = bytearray()  # framed by the connection's end
    while chunk := await reader.read(256 * 1024):
        body += chunk
        if len(body) > _MAX_BODY:
            raise ValueError("body over the limit")
    return status, headers, bytes(body), False


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, int, Headers]:
    raw = await reader.readuntil(b"\r\n\r\n")
    first, _, rest = raw[:-4].partition(b"\r\n")
    parsed = http11.status_of(first)
    if parsed is None:
        raise ValueError(f"not an HTTP/1.1 status line: {first[:80]!r}")
    headers: Headers = []
    for field in rest.decode("latin-1").split("\r\n") if rest else ():
        name, sep, value = field.partition(":")
        if not sep:
            raise ValueError(f"bad header line {field[:80]!r}")
        headers.append((name.strip(), value.strip()))
    return parsed[0], parsed[1], headers


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";", 1)[0].strip(), 16)  # ValueError if it is no number
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then the end
                pass
            return bytes(body)
        if size < 0 or len(body) + size > _MAX_BODY:
            raise ValueError("body over the limit")
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("chunk without its CRLF")
