"""A small synchronous client of a shoal (Docker Engine API) daemon, used by the CLI and the lab.

Hosts are `unix:///path/to.sock` or `tcp://127.0.0.1:2375`; the default is `$SHOAL_HOST`, then
`unix:///run/shoal/shoal.sock`. Every call goes to `/v1.47/...`; error bodies `{"message": ...}`
become `APIError(status, message)`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from shoal.errors import APIError, Unavailable

__all__ = ["API_VERSION", "DEFAULT_HOST", "Client"]

API_VERSION = "1.47"
DEFAULT_HOST = "unix:///run/shoal/shoal.sock"


class Client:
    def __init__(self, host: str | None = None, timeout: float = 60.0) -> None:
        self.host = host or os.environ.get("SHOAL_HOST") or DEFAULT_HOST
        if self.host.startswith("unix://"):
            self._socket: str | None = self.host[len("unix://") :]
            transport = httpx.HTTPTransport(uds=self._socket)
            base = "http://shoal"
        elif self.host.startswith(("tcp://", "http://")):
            self._socket = None
            transport = httpx.HTTPTransport()
            base = "http://" + self.host.split("://", 1)[1]
        else:
            raise ValueError(f"unsupported host {self.host!r}: use unix:///path or tcp://ip:port")
        self._http = httpx.Client(transport=transport, base_url=base, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _url(self, path: str) -> str:
        return path if path.startswith("/_ping") else f"/v{API_VERSION}{path}"

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
        try:
            resp = self._http.request(
                method, self._url(path), content=content, params=_params(params), headers=headers
            )
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError) as exc:
            raise Unavailable(
                f"Cannot connect to the shoal daemon at {self.host}. Is the daemon running?"
            ) from exc
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
        try:
            resp = self._http.post(
                self._url(path),
                content=content,
                params=_params(params),
                headers={"Content-Type": "application/x-tar"},
                timeout=None,
            )
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError) as exc:
            raise Unavailable(
                f"Cannot connect to the shoal daemon at {self.host}. Is the daemon running?"
            ) from exc
        return _decode(resp)

    @contextmanager
    def stream(
        self, method: str, path: str, params: dict[str, Any] | None = None
    ) -> Iterator[httpx.Response]:
        """A streaming response (logs -f); raises APIError for error statuses."""
        try:
            with self._http.stream(
                method, self._url(path), params=_params(params), timeout=None
            ) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    _decode(resp)
                yield resp
        except httpx.ConnectError as exc:
            raise Unavailable(
                f"Cannot connect to the shoal daemon at {self.host}. Is the daemon running?"
            ) from exc


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


def _decode(resp: httpx.Response) -> Any:
    data: Any = None
    if resp.content:
        try:
            data = resp.json()
        except ValueError:
            data = resp.text
    if resp.status_code >= 400:
        message = data.get("message") if isinstance(data, dict) else None
        raise APIError(resp.status_code, str(message or data or f"HTTP {resp.status_code}"))
    return data
