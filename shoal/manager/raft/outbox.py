"""Outgoing messages: one bounded queue and one sender task per peer.

The driver only queues (it never waits on the network between persist and apply); each
sender hands everything queued for its peer to `Transport.send` in one call, so messages
to a peer keep their order and a slow peer delays nobody else. A full queue drops the
message and reports the peer unreachable: Raft resends what matters.

Commit-only appends wait a little (`COMMIT_DELAY`). Once an entry commits, the leader
sends every follower an append without entries that only moves its commit index (etcd's
bcastAppend); with one writer that doubled the messages of a commit (leader: 4 sends and
4 receives; each follower: 2 and 2), and those sends went out ahead of the client's answer.
Held for `COMMIT_DELAY`, such an append is dropped when a later append to the same peer
goes out first (the leader's commit index only grows, so that one carries as much), and
sent otherwise. Delaying or dropping a message is what any network may do to Raft; only
when a follower hears of a commit changes: at most `COMMIT_DELAY` later. Its reads are
not affected (a ReadIndex round's heartbeats carry the commit index, and are not held).

Written at once: when a peer's sender is idle with nothing queued and the transport can
write without waiting (`send_now`: the framed connection is up and its buffer is not
full), what one Ready sends that peer is written by the driver itself at the end of the
round (`flush`), in one envelope, without a hop through the sender task: an idle leader's
heartbeats and a follower's answers took a loop turn and two task steps more each (issue
13: idle managers). Otherwise, or when `send_now` declines, the messages are queued as
before; order is kept (nothing is written at once while anything is queued or in flight).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from shoal.manager.raft.transport import Transport
from shoal.raft import Message, MessageType

__all__ = ["COMMIT_DELAY", "Outbox"]

log = logging.getLogger(__name__)

COMMIT_DELAY = 0.01  # seconds a commit-only append waits for a later append to carry it


class Outbox:
    def __init__(
        self,
        node_id: int,
        transport: Transport,
        limit: int,
        on_unreachable: Callable[[int], None],
        *,
        commit_delay: float = COMMIT_DELAY,
    ) -> None:
        self._id = node_id
        self._transport = transport
        self._limit = limit
        self._on_unreachable = on_unreachable
        self._commit_delay = commit_delay
        self._queues: dict[int, asyncio.Queue[Message]] = {}
        self._held: dict[int, tuple[Message, asyncio.TimerHandle]] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._send_now: Callable[[int, list[Message]], bool] | None = getattr(
            transport, "send_now", None
        )
        self._direct: dict[int, list[Message]] = {}  # to write at once, at `flush`
        self._busy: set[int] = set()  # peers whose sender is inside `Transport.send`

    def start(self, tg: asyncio.TaskGroup) -> None:
        """Sender tasks are created in `tg` (the driver's), as peers appear."""
        self._tg = tg
        self._queues.clear()
        self._direct.clear()
        self._busy.clear()
        for _, timer in self._held.values():
            timer.cancel()
        self._held.clear()

    @property
    def held(self) -> int:
        """Commit-only appends waiting (see the module)."""
        return len(self._held)

    def put(self, m: Message) -> None:
        q = self._queue(m.to)
        if m.type is MessageType.APP:
            held = self._held.pop(m.to, None)
            if not m.entries and self._commit_delay > 0:
                # the newer one carries at least the held one's commit index; the first
                # one's timer stands (a stream of them must not postpone it forever)
                timer = held[1] if held is not None else self._later(m.to)
                self._held[m.to] = (m, timer)
                return
            if held is not None:
                held[1].cancel()  # superseded: `m` carries the commit index too
        self._enqueue(q, m)

    def _later(self, peer: int) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(self._commit_delay, self._release, peer)

    def _release(self, peer: int) -> None:
        held = self._held.pop(peer, None)
        q = self._queues.get(peer)
        if held is not None and q is not None:
            self._enqueue(q, held[0])
            self.flush()

    def flush(self) -> None:
        """Write what `put` kept for writing at once (the driver calls it after sending a
        Ready's messages); what the transport declines is queued for the sender."""
        if not self._direct:
            return
        direct, self._direct = self._direct, {}
        send_now = self._send_now
        assert send_now is not None
        for peer, batch in direct.items():
            try:
                if send_now(peer, batch):
                    continue
            except Exception as exc:  # as in `_sender`: never the driver's end
                log.warning("raft %x: transport failed writing to %x: %r", self._id, peer, exc)
            q = self._queue(peer)
            for m in batch:
                self._enqueue_queued(q, m)

    def _queue(self, peer: int) -> asyncio.Queue[Message]:
        q = self._queues.get(peer)
        if q is None:
            assert self._tg is not None, "outbox not started"
            q = self._queues[peer] = asyncio.Queue(self._limit)
            self._tg.create_task(self._sender(peer, q), name=f"raft-{self._id:x}-to-{peer:x}")
        return q

    def _enqueue(self, q: asyncio.Queue[Message], m: Message) -> None:
        direct = self._direct.get(m.to)
        if direct is not None:
            direct.append(m)
        elif self._send_now is not None and q.empty() and m.to not in self._busy:
            self._direct[m.to] = [m]
        else:
            self._enqueue_queued(q, m)

    def _enqueue_queued(self, q: asyncio.Queue[Message], m: Message) -> None:
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
            self._busy.add(peer)
            try:
                await self._transport.send(peer, batch)
            except Exception as exc:  # a transport breaking its contract must not kill us
                log.warning("raft %x: transport failed sending to %x: %r", self._id, peer, exc)
                self._on_unreachable(peer)
            finally:
                self._busy.discard(peer)
            if me is not None and me.cancelling():
                # cancelled while sending, yet the send returned (an await inside dropped
                # the cancellation): stop as asked, or the driver's stop waits forever
                raise asyncio.CancelledError
