"""How Raft messages travel between managers: the `Transport` contract and an in-memory one.

Contract (the 2377 transport, shoal.manager.raft.tls_transport, implements it):

* `send(to, messages)` is best effort. Messages to one peer are sent in the order of the
  calls (the driver makes one call at a time per peer), may be lost, and are never
  duplicated by the transport. It never raises because a peer is down, unknown or slow:
  it reports that through the `PeerReporter` it was bound to (`report_unreachable(to)`),
  and Raft retries by itself. A `SNAP` message's outcome is reported with
  `report_snapshot(to, ok=...)` once known (delivered to the peer's driver, or not).
* Receiving: the transport hands what arrives to the peer's driver, `RaftNode.receive(
  messages)` for decoded messages or `RaftNode.receive_frames(frames)` for raw msgpack
  frames (the driver decodes them with the core's size limit and drops garbage with a
  log line). The transport authenticates peers (mutual TLS); Raft trusts authenticated
  peers to follow the protocol.

`InMemoryNetwork` connects in-process nodes for tests and benchmarks, with knobs for
loss, partitions (symmetric or one-way) and nodes that are down.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

from shoal.raft import Message, MessageType, decode_message, encode_message

__all__ = ["InMemoryNetwork", "InMemoryTransport", "MessageReceiver", "PeerReporter", "Transport"]


class PeerReporter(Protocol):
    """What a transport tells the driver (RaftNode implements it). Callable from any
    coroutine of the driver's event loop; must not block."""

    def report_unreachable(self, peer: int) -> None: ...

    def report_snapshot(self, peer: int, ok: bool) -> None: ...


class MessageReceiver(Protocol):
    """The receiving side of a driver (RaftNode implements it)."""

    async def receive(self, messages: list[Message]) -> None: ...


class Transport(Protocol):
    async def send(self, to: int, messages: list[Message]) -> None:
        """Best effort; never raises for an unreachable peer (see the module docstring)."""
        ...

    def bind(self, reporter: PeerReporter) -> None:
        """Called once by the driver before the first `send`."""
        ...


@dataclass
class NetworkStats:
    delivered: int = 0
    dropped: int = 0
    unreachable: int = 0


@dataclass
class InMemoryNetwork:
    """Nodes attached by Raft ID; `wire=True` sends every message through the codec.

    Knobs: `drop_rate` (random loss, from the seeded `rng`), `cut(a, b)` (one-way: a's
    messages to b are lost), `partition(*groups)` (only nodes of one group talk),
    `isolate(n)`, `heal()`. A detached or cut-off peer is reported unreachable."""

    rng: random.Random = field(default_factory=lambda: random.Random(0))
    drop_rate: float = 0.0
    wire: bool = False
    stats: NetworkStats = field(default_factory=NetworkStats)
    _nodes: dict[int, MessageReceiver] = field(default_factory=dict)
    _cut: set[tuple[int, int]] = field(default_factory=set)

    def transport(self, node_id: int) -> InMemoryTransport:
        return InMemoryTransport(self, node_id)

    def attach(self, node_id: int, receiver: MessageReceiver) -> None:
        self._nodes[node_id] = receiver

    def detach(self, node_id: int) -> None:
        self._nodes.pop(node_id, None)

    def cut(self, a: int, b: int, *, both: bool = True) -> None:
        self._cut.add((a, b))
        if both:
            self._cut.add((b, a))

    def partition(self, *groups: set[int] | frozenset[int]) -> None:
        self._cut.clear()
        for i, g in enumerate(groups):
            for h in groups[i + 1 :]:
                for a in g:
                    for b in h:
                        self.cut(a, b)

    def isolate(self, node: int, others: set[int] | frozenset[int]) -> None:
        for other in others:
            if other != node:
                self.cut(node, other)

    def heal(self) -> None:
        self._cut.clear()

    def reachable(self, a: int, b: int) -> bool:
        return b in self._nodes and (a, b) not in self._cut

    async def deliver(self, frm: int, to: int, messages: list[Message]) -> list[Message] | None:
        """The messages delivered (lost ones are left out), None when `to` is unreachable."""
        if not self.reachable(frm, to):
            self.stats.unreachable += len(messages)
            return None
        if self.drop_rate:
            kept = [m for m in messages if self.rng.random() >= self.drop_rate]
            self.stats.dropped += len(messages) - len(kept)
            messages = kept
        if messages:
            self.stats.delivered += len(messages)
            wire = [decode_message(encode_message(m)) for m in messages] if self.wire else messages
            await self._nodes[to].receive(wire)
        return messages


class InMemoryTransport:
    def __init__(self, network: InMemoryNetwork, node_id: int) -> None:
        self._net = network
        self._id = node_id
        self._reporter: PeerReporter | None = None

    def bind(self, reporter: PeerReporter) -> None:
        self._reporter = reporter

    async def send(self, to: int, messages: list[Message]) -> None:
        delivered = await self._net.deliver(self._id, to, messages)
        reporter = self._reporter
        if reporter is None:
            return
        if delivered is None:
            reporter.report_unreachable(to)
            delivered = []
        for m in messages:
            if m.type is MessageType.SNAP:
                reporter.report_snapshot(to, any(d is m for d in delivered))
