"""A small synchronous client of a shoal (Docker Engine API) daemon, used by the CLI and the lab.

Hosts are `unix:///path/to.sock` or `tcp://127.0.0.1:2375` (`https://` or a `tls` context:
TLS by `ssl`); the default is `$SHOAL_HOST`, then `unix:///run/shoal/shoal.sock`. Every call
goes to `/v1.47/...`; error bodies `{"message": ...}` become `APIError(status, message)`.

Built on the standard library's `http.client` (issue 13: httpx, which imports its own CLI and
rich with it, was 40 % of `shoal service ls`). One keep-alive connection per `Client`,
reopened when the daemon closed it while idle; streamed answers (`logs -f`, `events`,
`pull`) are read chunk by chunk as they arrive. Failing to reach the daemon raises
`Unavailable`; a connection broken during an exchange raises `ShoalError` with the reason.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from shoal.errors import APIError, ShoalError, Unavailable

if TYPE_CHECKING:
    import ssl

__all__ = ["API_VERSION", "DEFAULT_HOST", "Client", "Response"]

API_VERSION = "1.47"
DEFAULT_HOST = "unix:///run/shoal/shoal.sock"
_CHUNK = 65536


class _UnixConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a unix socket (the daemon's `/run/shoal/shoal.sock`)."""

    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class Response:
    """A daemon's answer: `status_code`, `headers` (lower-case names), the body read whole
    (`content`, `json()`, `text`) or as it arrives (`iter_bytes`, `iter_lines`)."""

    def __init__(self, raw: http.client.HTTPResponse) -> None:
        self._raw = raw
        self.status_code = raw.status
        self.headers = {k.lower(): v for k, v in raw.getheaders()}
        self._content: bytes | None = None

    def read(self) -> bytes:
        if self._content is None:
            self._content = _guard(self._raw.read)
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
            chunk = _guard(lambda: self._raw.read1(_CHUNK))
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
            self._netloc = rest.split("/", 1)[0]
            if scheme == "https" and self._tls is None:
                import ssl

                self._tls = ssl.create_default_context()
        else:
            raise ValueError(f"unsupported host {self.host!r}: use unix:///path or tcp://ip:port")
        self._conn: http.client.HTTPConnection | None = None

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
        return f"{url}?{urlencode(query)}" if query else url

    def _new_connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self._socket is not None:
            return _UnixConnection(self._socket, timeout)
        if self._tls is not None:
            return http.client.HTTPSConnection(self._netloc, timeout=timeout, context=self._tls)
        return http.client.HTTPConnection(self._netloc, timeout=timeout)

    def _open(self) -> http.client.HTTPConnection:
        conn = self._new_connection(self.timeout)
        try:
            conn.connect()
        except OSError as exc:
            conn.close()
            raise Unavailable(
                f"Cannot connect to the shoal daemon at {self.host}. Is the daemon running?"
            ) from exc
        return conn

    def _connection(self) -> http.client.HTTPConnection:
        conn = self._conn
        if conn is not None and (conn.sock is None or _readable(conn.sock)):
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
        conn: http.client.HTTPConnection | None = None,
    ) -> Response:
        """One exchange on `conn` (default: the shared keep-alive connection)."""
        shared = conn is None
        conn = self._connection() if conn is None else conn
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        headers = {"Host": "shoal", "Accept": "*/*", **headers}
        try:
            conn.request(method, url, body=content, headers=headers)
            raw = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            if shared:
                self._conn = None
            raise ShoalError(_reason(exc)) from exc
        if shared and raw.will_close:
            self._conn = None  # the answer owns the socket; the next call opens another
        return Response(raw)

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


def _readable(sock: socket.socket) -> bool:
    try:
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out waiting for the daemon's answer"
    return str(exc) or type(exc).__name__


def _guard(read: Any) -> bytes:
    try:
        data: bytes = read()
    except (OSError, http.client.HTTPException) as exc:
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
