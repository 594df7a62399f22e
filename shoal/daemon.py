"""Entry point of `shoal daemon`: builds the node (shoal.node.node) and serves its API.

The top of the import graph: it is the one module that wires the local API (shoal.httpapi)
to the node, so the node never imports the API.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from shoal.httpapi.server import serve_api
from shoal.node.node import Node
from shoal.node.options import DaemonOptions
from shoal.observe.server import serve_observe

__all__ = ["DaemonOptions", "run_daemon"]

log = logging.getLogger("shoal.daemon")


async def _serve(opts: DaemonOptions) -> None:
    daemon = Node(opts)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with (serve_api(daemon, opts.hosts or ["unix:///run/shoal/shoal.sock"]),
                serve_observe(daemon, opts.metrics_addr)):
        await daemon.start()
        log.info("daemon: ready (%s)", ", ".join(opts.hosts or ["unix:///run/shoal/shoal.sock"]))
        await stop.wait()
        log.info("daemon: stopping (tasks and mesh rules stay for the next start)")
        await daemon.shutdown()


def run_daemon(opts: DaemonOptions) -> None:
    logging.basicConfig(
        level=logging.DEBUG if opts.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_serve(opts))
