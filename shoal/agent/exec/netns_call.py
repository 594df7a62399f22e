"""Running a few lines of code inside another network namespace, from the daemon.

Network namespace membership is per thread, and a socket stays in the namespace it was
created in: a short-lived thread joins the namespace (setns), makes what it was asked for
(a netlink socket to configure the task's links, the DNS server's sockets) and dies with
its membership; the daemon's event loop then uses the result. No other code of the daemon
ever runs in the task's namespace.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

from shoal.agent.exec import nsutil

__all__ = ["in_netns", "in_netns_at"]

T = TypeVar("T")


def in_netns(netns_fd: int, work: Callable[[], T], name: str = "netns-call") -> T:
    """`work()` run in a thread that joined the namespace `netns_fd`: its result, or the
    exception it raised. Takes a few hundred microseconds."""
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            nsutil.setns(netns_fd, nsutil.CLONE_NEWNET)
            result.append(work())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def in_netns_at(netns_path: str, work: Callable[[], T], name: str = "netns-call") -> T:
    """`in_netns` for the namespace pinned at `netns_path` (e.g. /run/netns/<name>)."""
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return in_netns(fd, work, name)
    finally:
        os.close(fd)
