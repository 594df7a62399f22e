"""Entry point of `shoal daemon`: builds the node (shoal.node.node) and serves its API.

The top of the import graph: it is the one module that wires the local API (shoal.httpapi)
to the node, so the node never imports the API.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys

from shoal.httpapi.server import serve_api
from shoal.node.node import Node
from shoal.node.options import DaemonOptions
from shoal.observe.server import serve_observe

__all__ = ["DaemonOptions", "run_daemon"]

log = logging.getLogger("shoal.daemon")


def _pidfd_child_watcher(loop: asyncio.AbstractEventLoop) -> None:
    """Child processes (task shims, runc, nft, conntrack) watched by a pidfd in the loop
    instead of asyncio's default of one thread per child, whose start the loop waits for
    (~10 % of a node's loop in a 60-task burst under load). Python 3.11's asyncio only;
    uvloop and 3.12+ watch children without threads already."""
    watcher_cls = getattr(asyncio, "PidfdChildWatcher", None)
    if watcher_cls is None or not hasattr(os, "pidfd_open") or sys.version_info >= (3, 12):
        return
    if type(loop).__module__.startswith("uvloop"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))  # the kernel has pidfds (Linux >= 5.3)
    except OSError:
        return
    watcher = watcher_cls()
    watcher.attach_loop(loop)
    asyncio.get_event_loop_policy().set_child_watcher(watcher)


async def _serve(opts: DaemonOptions) -> None:
    loop = asyncio.get_running_loop()
    _pidfd_child_watcher(loop)
    daemon = Node(opts)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with (serve_api(daemon, opts.hosts or ["unix:///run/shoal/shoal.sock"]),
                serve_observe(daemon, opts.metrics_addr)):
        await daemon.start()
        # What exists now (modules, classes, the loaded store) lives as long as the
        # process: kept out of every later collection, which then walks only what
        # was made since (a full collection of it alone took 50-90 ms).
        gc.collect()
        gc.freeze()
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
