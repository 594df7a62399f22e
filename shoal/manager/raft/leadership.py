"""Telling the application about leadership, in order, one callback at a time.

The driver announces `True` once the node leads *and* has applied the first entry of its
term (its state is then current), `False` when it stops leading or stops. Callbacks run
in a task of their own so a slow `become_leader` never stalls Raft; a failing callback is
logged and does not stop the others.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable

__all__ = ["LeadershipCallback", "LeadershipNotifier"]

log = logging.getLogger(__name__)

LeadershipCallback = Callable[[bool], Awaitable[None] | None]


class LeadershipNotifier:
    def __init__(self, node_id: int) -> None:
        self._id = node_id
        self._callbacks: list[LeadershipCallback] = []
        self._queue: asyncio.Queue[bool] = asyncio.Queue()
        self.announced = False

    def add(self, callback: LeadershipCallback) -> None:
        self._callbacks.append(callback)

    def announce(self, leader: bool) -> None:
        if leader != self.announced:
            self.announced = leader
            self._queue.put_nowait(leader)

    async def run(self) -> None:
        while True:
            await self.call(await self._queue.get())

    async def close(self) -> None:
        """The node stopped: announce `False` at once if `True` was the last word."""
        if self.announced:
            self.announced = False
            await self.call(False)

    async def call(self, leader: bool) -> None:
        for cb in self._callbacks:
            try:
                result = cb(leader)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("raft %x: leadership callback failed", self._id)
