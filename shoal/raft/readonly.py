"""ReadIndex bookkeeping on the leader (the "safe" read-only mode of §6.4 of the thesis).

A read request is remembered with the commit index at the time it arrived; the leader
then sends a heartbeat round carrying the request's context. Once a quorum of voters has
answered a heartbeat carrying that context (or a later one: heartbeats are FIFO per
leader term, so acknowledging a later one acknowledges the leadership for earlier ones),
the leader knows it was still leader when the request arrived and releases the request
with its index. The reader must then wait until it has applied that index.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shoal.raft.messages import Message

__all__ = ["ReadIndexStatus", "ReadOnly", "ReadState"]


@dataclass(frozen=True, slots=True)
class ReadState:
    """A read request released: serve it once the local state machine applied `index`."""

    index: int
    context: bytes


@dataclass(slots=True)
class ReadIndexStatus:
    request: Message
    index: int
    acks: set[int] = field(default_factory=set)


class ReadOnly:
    def __init__(self) -> None:
        self.pending: dict[bytes, ReadIndexStatus] = {}
        self.queue: list[bytes] = []

    def add_request(self, index: int, m: Message) -> None:
        ctx = m.context
        if ctx in self.pending:
            return
        self.pending[ctx] = ReadIndexStatus(request=m, index=index)
        self.queue.append(ctx)

    def recv_ack(self, node: int, ctx: bytes) -> set[int] | None:
        status = self.pending.get(ctx)
        if status is None:
            return None
        status.acks.add(node)
        return status.acks

    def advance(self, ctx: bytes) -> list[ReadIndexStatus]:
        """Release every request up to and including the one with `ctx`, in order."""
        if ctx not in self.pending:
            return []
        n = self.queue.index(ctx) + 1
        released = [self.pending.pop(c) for c in self.queue[:n]]
        del self.queue[:n]
        return released

    def last_pending_context(self) -> bytes | None:
        return self.queue[-1] if self.queue else None
