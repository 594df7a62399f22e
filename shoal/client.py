"""A small synchronous client of a shoal (Docker Engine API) daemon, used by the CLI and the lab.

Hosts are `unix:///path/to.sock` or `tcp://127.0.0.1:2375` (`https://` or a `tls` context:
TLS by `ssl`); the default is `$SHOAL_HOST`, then `unix:///run/shoal/shoal.sock`. Every call
goes to `/v1.47/...`; error bodies `{"message": ...}` become `APIError(status, message)`.

HTTP/1.1 is spoken here, over a plain socket (issue 13, `shoal service ls`: httpx imported its
own CLI and rich; then `http.client` imported email.parser, ssl and urllib.parse, 93 M
instructions of a 313 M run, h11 42 M with its regular expressions; this is ~1 M). What a
client of one API daemon needs: requests with a `Content-Length` body, answers framed by
`Content-Length`, chunked transfer coding or the connection's end (RFC 9112 section 6.3),
1xx answers skipped. One keep-alive connection per `Client`, reopened when the daemon closed it
while idle (the socket reads as EOF before reuse); streamed answers (`logs -f`, `events`,
`pull`) get a connection of their own and are read chunk by chunk as they arrive. `ssl` and
`socket` are imported only for TLS hosts (plain ones use `_socket`, the C module `socket`
wraps: `socket`'s import, its enum conversions, was 14 M). Failing to reach the daemon raises
`Unavailable`; a connection broken during an exchange raises `ShoalError` with the reason.
"""

from __future__ import annotations

import _socket
import json
import os
import select
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from shoal import http11
from shoal.errors import APIError, ShoalError, Unavailable

if TYPE_CHECKING:
    import ssl

__all__ = ["API_VERSION", "DEFAULT_HOST", "Client", "Response"]

API_VERSION = "1.47"
DEFAULT_HOST = "unix:///run/shoal/shoal.sock"
_CHUNK = 65536
_MAX_LINE = 65536  # a status, header or chunk-size line longer than this is refused
_MAX_HEADERS = 100
_BODY_METHODS = ("POST", "PUT", "PATCH")  # sent with `Content-Length: 0` when bodyless


class _ProtocolError(Exception):
    """The daemon's bytes are not HTTP/1.1 as this client reads it (or ended too early)."""


class _Connection:
    """One HTTP/1.1 connection: its socket (`None` once closed) and the bytes read ahead."""

    def __init__(self, sock: Any) -> None:
        self.sock: Any = sock
        self._buf = bytearray()
        self._pos = 0  # what of `_buf` was not consumed yet starts here
        self.busy = False  # an answer's body is still being read from it

    def close(self) -> None:
        sock, self.sock = self.sock, None
        self._buf, self._pos = bytearray(), 0
        if sock is not None:
            sock.close()

    def idle(self) -> bool:
        """Reusable for another request: open, no answer being read, nothing read ahead and
        nothing waiting to be read (a daemon that closed an idle connection left an EOF)."""
        return (
            self.sock is not None
            and not self.busy
            and self._pos >= len(self._buf)
            and not _readable(self.sock)
        )

    def send(self, data: bytes) -> None:
        if self.sock is None:
            raise _ProtocolError("connection closed")
        self.sock.sendall(data)

    def _fill(self) -> bool:
        """One more read from the socket into the buffer; False at EOF."""
        if self.sock is None:
            return False
        data = self.sock.recv(_CHUNK)
        if not data:
            return False
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data
        return True

    def readline(self) -> bytes:
        """A line with its ending (b"" at EOF before any byte; partial at EOF after some)."""
        while True:
            end = self._buf.find(b"\n", self._pos)
            if end >= 0:
                line = bytes(self._buf[self._pos : end + 1])
                self._pos = end + 1
                return line
            if len(self._buf) - self._pos > _MAX_LINE:
                raise _ProtocolError(f"got more than {_MAX_LINE} bytes when reading a line")
            if not self._fill():
                line = bytes(self._buf[self._pos :])
                self._pos = len(self._buf)
                return line

    def read_some(self, limit: int) -> bytes:
        """Up to `limit` bytes: what is buffered, else one read (b"" at EOF)."""
        if self._pos >= len(self._buf) and not self._fill():
            return b""
        end = min(len(self._buf), self._pos + limit)
        data = bytes(self._buf[self._pos : end])
        self._pos = end
        return data


class _Body:
    """An answer's body as it is framed: `length` bytes (None: to the connection's end) or
    chunked; `read1` is one piece as it arrives, b"" at the end."""

    def __init__(self, conn: _Connection, length: int | None, chunked: bool, last: bool) -> None:
        self._conn = conn
        self._left = length  # bytes left of the body (or of the current chunk when chunked)
        self._chunked = chunked
        self._last = last  # the connection ends with this answer: closed once it is read
        self._read = 0
        self.done = False
        conn.busy = True
        if length == 0 and not chunked:
            self._finish()

    def read1(self, limit: int = _CHUNK) -> bytes:
        if self.done:
            return b""
        if self._chunked:
            if not self._left:
                self._left = self._chunk_size()
                if self._left == 0:
                    self._trailers()
                    return self._finish()
            data = self._conn.read_some(min(limit, self._left))
            if not data:
                raise _ProtocolError(f"IncompleteRead({self._read} bytes read)")
            self._left -= len(data)
            self._read += len(data)
            if not self._left:
                self._crlf()
            return data
        want = limit if self._left is None else min(limit, self._left)
        data = self._conn.read_some(want)
        if not data:
            if self._left is None:
                return self._finish()
            raise _ProtocolError(
                f"IncompleteRead({self._read} bytes read, {self._left} more expected)"
            )
        self._read += len(data)
        if self._left is not None:
            self._left -= len(data)
            if not self._left:
                self._finish()
        return data

    def read_all(self) -> bytes:
        parts: list[bytes] = []
        while True:
            data = self.read1()
            if not data:
                return b"".join(parts)
            parts.append(data)

    def _finish(self) -> bytes:
        self.done = True
        self._conn.busy = False
        if self._last:
            self._conn.close()
        return b""

    def _chunk_size(self) -> int:
        line = self._conn.readline()
        if not line.endswith(b"\n"):
            raise _ProtocolError(f"IncompleteRead({self._read} bytes read)")
        size = line.split(b";", 1)[0].strip()
        if not size or size.strip(b"0123456789abcdefABCDEF"):
            raise _ProtocolError(f"invalid chunk size {size[:80]!r}")
        return int(size, 16)

    def _crlf(self) -> None:
        if self._conn.readline() not in (b"\r\n", b"\n"):
            raise _ProtocolError("chunk not followed by CRLF")

    def _trailers(self) -> None:
        for _ in range(_MAX_HEADERS + 1):
            line = self._conn.readline()
            if line in (b"\r\n", b"\n", b""):
                return
        raise _ProtocolError(f"got more than {_MAX_HEADERS} headers")


class Response:
    """A daemon's answer: `status_code`, `headers` (lower-case names), the body read whole
    (`content`, `json()`, `text`) or as it arrives (`iter_bytes`, `iter_lines`)."""

    def __init__(self, status: int, headers: dict[str, str], body: _Body) -> None:
        self.status_code = status
        self.headers = headers
        self._body = body
        self._content: bytes | None = None

    def read(self) -> bytes:
        if self._content is None:
            self._content = _guard(self._body.read_all)
        return self._content

    @property
    def content(self) -> bytes:
        return self.read()

    @property
    def text(self) -> str:
        return self.read().decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.read())

    def iter_bytes(self) -> Iterator[bytes]:
        """The body in the pieces it arrives in (one chunk of a chunked answer at a time)."""
        if self._content is not None:
            if self._content:
                yield self._content
            return
        while True:
            chunk = _guard(self._body.read1)
            if not chunk:
                return
            yield chunk

    def iter_lines(self) -> Iterator[str]:
        """Lines without their ending, as soon as each is complete."""
        pending = b""
        for chunk in self.iter_bytes():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.rstrip(b"\r").decode(errors="replace")
        if pending:
            yield pending.decode(errors="replace")


class Client:
    def __init__(
        self, host: str | None = None, timeout: float = 60.0, tls: ssl.SSLContext | None = None
    ) -> None:
        self.host = host or os.environ.get("SHOAL_HOST") or DEFAULT_HOST
        self.timeout = timeout
        self._tls = tls
        self._socket: str | None = None
        if self.host.startswith("unix://"):
            self._socket = self.host[len("unix://") :]
        elif self.host.startswith(("tcp://", "http://", "https://")):
            scheme, _, rest = self.host.partition("://")
            if scheme == "https" and self._tls is None:
                import ssl

                self._tls = ssl.create_default_context()
            netloc = rest.split("/", 1)[0]
            try:
                self._address = _split_netloc(netloc, 443 if self._tls is not None else 80)
            except ValueError as exc:
                raise ValueError(f"invalid host {self.host!r}: {exc}") from None
        else:
            raise ValueError(f"unsupported host {self.host!r}: use unix:///path or tcp://ip:port")
        self._conn: _Connection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _url(self, path: str, params: dict[str, Any] | None) -> str:
        url = path if path.startswith("/_ping") else f"/v{API_VERSION}{path}"
        query = _params(params)
        return f"{url}?{_urlencode(query)}" if query else url

    def _connect(self, timeout: float | None) -> Any:
        """A connected socket to the daemon (TLS-wrapped for TLS hosts)."""
        if self._socket is not None:
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(self._socket)
            except BaseException:
                sock.close()
                raise
            return sock
        host, port = self._address
        if self._tls is None:
            return _tcp_connection(_socket, host, port, timeout)
        import socket

        sock = _tcp_connection(socket, host, port, timeout)
        try:
            return self._tls.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise

    def _open(self) -> _Connection:
        try:
            sock = self._connect(self.timeout)
        except OSError as exc:
            raise Unavailable(
                f"Cannot connect to the shoal daemon at {self.host}. Is the daemon running?"
            ) from exc
        return _Connection(sock)

    def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and not conn.idle():
            conn.close()  # closed by the daemon while idle (EOF waits to be read): reopen
            conn = None
        if conn is None:
            conn = self._conn = self._open()
        return conn

    def _send(
        self,
        method: str,
        url: str,
        content: bytes | None,
        headers: dict[str, str],
        timeout: float | None,
        conn: _Connection | None = None,
    ) -> Response:
        """One exchange on `conn` (default: the shared keep-alive connection)."""
        shared = conn is None
        conn = self._connection() if conn is None else conn
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        try:
            conn.send(_request(method, url, content, headers))
            status, fields, body, will_close = _response(conn, method)
        except (OSError, _ProtocolError) as exc:
            conn.close()
            if shared:
                self._conn = None
            raise ShoalError(_reason(exc)) from exc
        if shared and will_close:
            self._conn = None  # the answer owns the socket; the next call opens another
        return Response(status, fields, body)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        content = None if body is None else json.dumps(body).encode()
        headers = dict(headers or {})
        if content is not None:
            headers["Content-Type"] = "application/json"
        resp = self._send(method, self._url(path, params), content, headers, self.timeout)
        return _decode(resp)

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(
        self,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        return self.request("POST", path, body=body, params=params, headers=headers)

    def delete(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("DELETE", path, params=params)

    def post_bytes(self, path: str, content: bytes, params: dict[str, Any] | None = None) -> Any:
        """POST a raw body (`image load`'s tarball); the answer decoded as `request` does."""
        headers = {"Content-Type": "application/x-tar"}
        return _decode(self._send("POST", self._url(path, params), content, headers, None))

    @contextmanager
    def stream(
        self, method: str, path: str, params: dict[str, Any] | None = None
    ) -> Iterator[Response]:
        """A streaming response (logs -f) on a connection of its own, so that other calls can
        be made while it is read; raises APIError for error statuses."""
        conn = self._open()
        try:
            resp = self._send(method, self._url(path, params), None, {}, None, conn)
            if resp.status_code >= 400:
                _decode(resp)
            yield resp
        finally:
            conn.close()


# --- HTTP/1.1 ------------------------------------------------------------------------------


def _request(method: str, url: str, content: bytes | None, headers: dict[str, str]) -> bytes:
    """The request's bytes: `Host: shoal`, `Accept: */*`, the headers, and `Content-Length`
    for a body (0 for a bodyless POST/PUT/PATCH, as http.client sent it)."""
    lines = [f"{method} {_target(url)} HTTP/1.1", "Host: shoal", "Accept-Encoding: identity"]
    fields = {"Accept": "*/*", **headers}
    for name, value in fields.items():
        if http11.unsafe(name) or http11.unsafe(value):
            raise ValueError(f"invalid header {name!r}: {value!r}")
        lines.append(f"{name}: {value}")
    if content is not None or method in _BODY_METHODS:
        lines.append(f"Content-Length: {len(content or b'')}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + content if content else head


def _response(conn: _Connection, method: str) -> tuple[int, dict[str, str], _Body, bool]:
    """Read an answer's status line and headers from `conn`: (status, headers with lower-case
    names, the body as framed, whether the connection ends with this answer)."""
    while True:
        line = conn.readline()
        if not line:
            raise _ProtocolError("Remote end closed connection without response")
        parsed = http11.status_of(line)
        if parsed is None:
            raise _ProtocolError(f"bad status line from the daemon: {line[:80]!r}")
        version, status = parsed
        headers = _headers(conn)
        if not http11.is_interim(status):
            break
    try:
        length, chunked, will_close = http11.body_framing(method, version, status, headers)
    except ValueError as exc:
        raise _ProtocolError(str(exc)) from None
    return status, headers, _Body(conn, length, chunked, will_close), will_close


def _headers(conn: _Connection) -> dict[str, str]:
    headers: dict[str, str] = {}
    last = ""
    for _ in range(_MAX_HEADERS + 1):
        raw = conn.readline()
        if raw in (b"\r\n", b"\n"):
            return headers
        if not raw.endswith(b"\n"):
            raise _ProtocolError("Remote end closed connection in the answer's headers")
        line = raw.decode("latin-1").rstrip("\r\n")
        if line[:1] in (" ", "\t") and last:  # obsolete line folding: part of the last field
            headers[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue  # not a field (http.client skipped these too)
        last = name.strip().lower()
        headers[last] = value.strip()
    raise _ProtocolError(f"got more than {_MAX_HEADERS} headers")


# characters a request target may hold as they are (RFC 3986 pchar, "/", "?" and "%")
_TARGET_SAFE = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/?%"
)
# what urllib.parse.quote_plus keeps (with safe=""): letters, digits and "_.-~"
_QUERY_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def _target(url: str) -> str:
    """The URL with what may not appear in a request line (spaces, controls, non-ASCII)
    percent-encoded as UTF-8, as Go's client sends `/services/a%20b`."""
    if all(c in _TARGET_SAFE for c in url):
        return url
    return "".join(c if c in _TARGET_SAFE else _percent(c) for c in url)


def _percent(char: str) -> str:
    return "".join(f"%{b:02X}" for b in char.encode())


def _quote_plus(text: str) -> str:
    """urllib.parse.quote_plus(text) (urllib.parse imports ipaddress and builds namedtuples:
    10 M instructions of a CLI run)."""
    if all(c in _QUERY_SAFE for c in text):
        return text
    return "".join(c if c in _QUERY_SAFE else "+" if c == " " else _percent(c) for c in text)


def _urlencode(query: dict[str, str]) -> str:
    return "&".join(f"{_quote_plus(k)}={_quote_plus(v)}" for k, v in query.items())


def _split_netloc(netloc: str, default_port: int) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `host` as http.client read them."""
    host, port = netloc, default_port
    colon, bracket = netloc.rfind(":"), netloc.rfind("]")
    if colon > bracket:
        try:
            port = int(netloc[colon + 1 :]) if netloc[colon + 1 :] else default_port
        except ValueError:
            raise ValueError(f"nonnumeric port {netloc[colon + 1 :]!r}") from None
        host = netloc[:colon]
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def _tcp_connection(module: Any, host: str, port: int, timeout: float | None) -> Any:
    """socket.create_connection's loop over the addresses of `host`, with `module`'s socket
    type (`_socket` for plain TCP, `socket` when the socket is to be wrapped in TLS)."""
    error: OSError | None = None
    for family, kind, proto, _, address in module.getaddrinfo(host, port, 0, module.SOCK_STREAM):
        sock = module.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.setsockopt(module.IPPROTO_TCP, module.TCP_NODELAY, 1)
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
        except BaseException:
            sock.close()
            raise
    raise error or OSError("getaddrinfo returns an empty list")


def _readable(sock: Any) -> bool:
    try:
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out waiting for the daemon's answer"
    return str(exc) or type(exc).__name__


def _guard(read: Any) -> bytes:
    try:
        data: bytes = read()
    except (OSError, _ProtocolError) as exc:
        raise ShoalError(_reason(exc)) from exc
    return data


def _params(params: dict[str, Any] | None) -> dict[str, str] | None:
    if params is None:
        return None
    out: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "1" if value else "0"
        elif isinstance(value, dict | list):
            out[key] = json.dumps(value)
        else:
            out[key] = str(value)
    return out


def _decode(resp: Response) -> Any:
    data: Any = None
    content = resp.read()
    if content:
        try:
            data = json.loads(content)
        except ValueError:
            data = content.decode(errors="replace")
    if resp.status_code >= 400:
        message = data.get("message") if isinstance(data, dict) else None
        raise APIError(resp.status_code, str(message or data or f"HTTP {resp.status_code}"))
    return data
