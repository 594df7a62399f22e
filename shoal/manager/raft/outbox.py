"""Outgoing messages: one bounded queue and one sender task per peer.

The driver only queues (it never waits on the network between persist and apply); each
sender hands everything queued for its peer to `Transport.send` in one call, so messages
to a peer keep their order and a slow peer delays nobody else. A full queue drops the
message and reports the peer unreachable: Raft resends what matters.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from shoal.manager.raft.transport import Transport
from shoal.raft import Message

__all__ = ["Outbox"]

log = logging.getLogger(__name__)


class Outbox:
    def __init__(
        self,
        node_id: int,
        transport: Transport,
        limit: int,
        on_unreachable: Callable[[int], None],
    ) -> None:
        self._id = node_id
        self._transport = transport
        self._limit = limit
        self._on_unreachable = on_unreachable
        self._queues: dict[int, asyncio.Queue[Message]] = {}
        self._tg: asyncio.TaskGroup | None = None

    def start(self, tg: asyncio.TaskGroup) -> None:
        """Sender tasks are created in `tg` (the driver's), as peers appear."""
        self._tg = tg
        self._queues.clear()

    def put(self, m: Message) -> None:
        q = self._queues.get(m.to)
        if q is None:
            assert self._tg is not None, "outbox not started"
            q = self._queues[m.to] = asyncio.Queue(self._limit)
            self._tg.create_task(self._sender(m.to, q), name=f"raft-{self._id:x}-to-{m.to:x}")
        try:
            q.put_nowait(m)
        except asyncio.QueueFull:
            self._on_unreachable(m.to)

    async def _sender(self, peer: int, q: asyncio.Queue[Message]) -> None:
        me = asyncio.current_task()
        while True:
            batch = [await q.get()]
            while not q.empty():
                batch.append(q.get_nowait())
            try:
                await self._transport.send(peer, batch)
            except Exception as exc:  # a transport breaking its contract must not kill us
                log.warning("raft %x: transport failed sending to %x: %r", self._id, peer, exc)
                self._on_unreachable(peer)
            if me is not None and me.cancelling():
                # cancelled while sending, yet the send returned (an await inside dropped
                # the cancellation): stop as asked, or the driver's stop waits forever
                raise asyncio.CancelledError
