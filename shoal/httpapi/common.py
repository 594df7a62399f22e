"""Helpers shared by the route modules: JSON responses, query parsing, filters."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from shoal.api.codec import encode
from shoal.errors import InvalidArgument
from shoal.httpapi.node_api import LocalNode

__all__ = [
    "API_VERSION",
    "MIN_API_VERSION",
    "daemon_of",
    "json_response",
    "label_matches",
    "parse_filters",
    "query_bool",
    "query_int",
    "route",
]

API_VERSION = "1.47"
MIN_API_VERSION = "1.24"
DAEMON_KEY = web.AppKey("daemon", LocalNode)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route(router: web.UrlDispatcher, method: str, path: str, handler: Handler) -> None:
    """Serve `path` unversioned and under `/v<major>.<minor>` (checked by the app).

    The current version gets a literal prefix of its own: aiohttp indexes a route by its
    path up to the first variable, and `/v{api_version}/...` files every versioned route
    under `/`, so each versioned request was a regex scan of all of them (16-25 us, 1.2 us
    unversioned; a docker CLI as new as the API sends `/v1.47/...`). A literal prefix for
    every supported version would be 24 times the routes (~90 ms to build both apps under
    load); other versions keep the scan, and the app refuses those out of range."""
    router.add_route(method, path, handler)
    router.add_route(method, f"/v{API_VERSION}{path}", handler)
    router.add_route(method, r"/v{api_version:\d+\.\d+}" + path, handler)


def daemon_of(request: web.Request) -> LocalNode:
    """The node this API serves, as the narrow `LocalNode` interface (node_api.py)."""
    return request.app[DAEMON_KEY]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=encode(data), status=status, headers={"Content-Type": "application/json"}
    )


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    return value.strip().lower() not in ("", "0", "no", "false", "none")


def query_int(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {value!r} is not an integer") from None


def parse_filters(request: web.Request) -> dict[str, list[str]]:
    """Docker's `filters` query: `{"k":{"v":true}}` (CLI) or `{"k":["v"]}` (docker-py)."""
    raw = request.query.get("filters")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise InvalidArgument(f"invalid filter {raw!r}: not JSON") from None
    if not isinstance(data, dict):
        raise InvalidArgument("invalid filter: expected a JSON object")
    out: dict[str, list[str]] = {}
    for key, values in data.items():
        if isinstance(values, dict):
            out[key] = [str(v) for v, on in values.items() if on]
        elif isinstance(values, list):
            out[key] = [str(v) for v in values]
        elif isinstance(values, str):
            out[key] = [values]
        else:
            raise InvalidArgument(f"invalid filter value for {key!r}")
    return out


def check_filter_keys(filters: dict[str, list[str]], allowed: set[str]) -> None:
    for key in filters:
        if key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")


def label_matches(labels: dict[str, str] | None, expr: str) -> bool:
    """Docker's `label` filter: `key` (present) or `key=value` (equal)."""
    key, sep, value = expr.partition("=")
    labels = labels or {}
    return key in labels and (not sep or labels[key] == value)
