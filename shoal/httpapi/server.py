"""Listening for the API: unix sockets (root-only) and loopback TCP."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from shoal.agent.oci.runtime import OciRuntime
from shoal.agent.oci.views import RuntimeContainers
from shoal.errors import InvalidArgument
from shoal.httpapi.app import make_app
from shoal.httpapi.taskcontainers import CONTAINERS_KEY
from shoal.node.node import Node

__all__ = ["SHUTDOWN_GRACE", "serve_api"]

SHUTDOWN_GRACE = 3.0  # seconds


@asynccontextmanager
async def serve_api(daemon: Node, hosts: list[str]) -> AsyncIterator[None]:
    app = make_app(daemon)
    if isinstance(daemon.runtime, OciRuntime):
        app[CONTAINERS_KEY] = RuntimeContainers(daemon.runtime)
    # a stop waits this long for requests in flight; streams (`docker events`, `logs -f`)
    # never end on their own, so they are cut then (aiohttp's default waits 60 s)
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           shutdown_timeout=SHUTDOWN_GRACE)
    await runner.setup()
    try:
        for host in hosts:
            if host.startswith("unix://"):
                path = Path(host[len("unix://") :])
                path.parent.mkdir(parents=True, exist_ok=True)
                if path.is_socket():
                    path.unlink()
                site: web.BaseSite = web.UnixSite(runner, str(path))
                await site.start()
                os.chmod(path, 0o600)
            elif host.startswith("tcp://"):
                addr, _, port = host[len("tcp://") :].rpartition(":")
                if not ipaddress.ip_address(addr or "127.0.0.1").is_loopback:
                    raise InvalidArgument(
                        f"refusing to serve the API on {host}: only loopback TCP addresses "
                        "are allowed (the API has no authentication)"
                    )
                site = web.TCPSite(runner, addr or "127.0.0.1", int(port or 2375))
                await site.start()
            else:
                raise InvalidArgument(f"invalid host {host!r}: use unix:///path or tcp://ip:port")
        yield
    finally:
        await runner.cleanup()
