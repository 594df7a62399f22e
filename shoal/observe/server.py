"""The `--metrics-addr` listener: /metrics (Prometheus text format), the dashboard page at
/ and the JSON it polls at /dashboard.json. Read-only; nothing here changes the node.

`metrics_of(node)` is the node's one `NodeMetrics` (created on first use: the first API
request or scrape), shared by this listener and the API's latency middleware
(`api_latency_middleware`). prometheus_client is imported with it, not with this module:
~1.1 MiB of RSS that a daemon nobody asks anything (an idle one) does not carry.
"""

from __future__ import annotations

import asyncio
import re
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

from shoal.observe.dashboard import dashboard_state

if TYPE_CHECKING:
    from shoal.observe.metrics import NodeMetrics

__all__ = ["api_latency_middleware", "make_observe_app", "metrics_of", "serve_observe"]

# the API's current version has literal routes too (shoal.httpapi.common.route): /v1.47/x
_LITERAL_VERSION = re.compile(r"^/v\d+\.\d+/")
_METRICS: weakref.WeakKeyDictionary[Any, NodeMetrics] = weakref.WeakKeyDictionary()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def metrics_of(node: Any) -> NodeMetrics:
    if node not in _METRICS:
        from shoal.observe.metrics import NodeMetrics

        _METRICS[node] = NodeMetrics(node)
    return _METRICS[node]


def api_latency_middleware(node: Any) -> Any:
    """An aiohttp middleware timing every API request into the node's histogram."""

    @web.middleware
    async def timed(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        try:
            return await handler(request)
        finally:
            info = request.match_info.route.resource
            route = info.canonical if info is not None else "unmatched"
            if (literal := _LITERAL_VERSION.match(route)) is not None:  # one label per route
                route = "/v{api_version}/" + route[literal.end() :]
            metrics_of(node).observe_request(request.method, route, time.perf_counter() - start)

    return timed


LONG_POLL_SECONDS = 1.0  # a page polling with ?after= waits at most this for a change


async def _changed_since(node: Any, index: int, timeout: float) -> None:
    """Wait until the node's store has applied past `index` (or `timeout`): the page's
    long poll, so a change shows at once and the mesh (not in the store) within a second."""
    store = node.store
    if store is None or store.index != index:
        return
    queue = store.watch()
    try:
        async with asyncio.timeout(timeout):
            while store.index == index:
                await queue.get()
    except TimeoutError:
        pass
    finally:
        store.unwatch(queue)


def _page() -> bytes:
    return resources.files("shoal.observe").joinpath("dashboard.html").read_bytes()


def make_observe_app(node: Any) -> web.Application:
    page = _page()

    async def scrape(_: web.Request) -> web.Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        metrics = metrics_of(node)
        await metrics.refresh()
        return web.Response(body=metrics.exposition(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def index(_: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8")

    async def state(request: web.Request) -> web.Response:
        after = request.query.get("after", "")
        if after.isdigit():
            await _changed_since(node, int(after), LONG_POLL_SECONDS)
        return web.json_response(dashboard_state(node),
                                 headers={"Cache-Control": "no-store"})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/", index)
    app.router.add_get("/dashboard.json", state)
    return app


def parse_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"invalid metrics address {addr!r}: expected HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


@asynccontextmanager
async def serve_observe(node: Any, addr: str) -> AsyncIterator[int | None]:
    """Serve metrics and the dashboard on `addr` ("" serves nothing); yields the port."""
    if not addr:
        yield None
        return
    host, port = parse_addr(addr)
    runner = web.AppRunner(make_observe_app(node), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    try:
        yield sockets[0].getsockname()[1] if sockets else port
    finally:
        await runner.cleanup()
