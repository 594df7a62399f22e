"""A tiny in-memory cluster for scenario tests, in the spirit of etcd-io/raft's test
network and interaction tests: every Ready is persisted to a MemoryStorage, its messages
are queued, and `stabilize()` delivers them (minus cut links and dropped types) until
nothing moves any more. Delivered messages are recorded as one-line descriptions, so a
test can assert the exact exchange (`net.trace`)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from shoal.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    Entry,
    EntryType,
    MemoryStorage,
    Message,
    MessageType,
    RawNode,
    ReadState,
    StateRole,
    decode,
)

__all__ = ["Net", "NodeBox", "describe", "log_of"]


def describe(m: Message) -> str:
    """`1->2 APP term=2 log=1/1 ents=[2/2] commit=1` — the fields that matter per type."""
    t = m.type
    s = f"{m.from_}->{m.to} {t.name} term={m.term}"
    if t in (MessageType.VOTE, MessageType.PRE_VOTE, MessageType.APP):
        s += f" log={m.log_term}/{m.index}"
    if m.entries:
        s += " ents=[" + ",".join(f"{e.term}/{e.index}" for e in m.entries) + "]"
    if t in (MessageType.APP, MessageType.HEARTBEAT):
        s += f" commit={m.commit}"
    if t is MessageType.APP_RESP:
        s += f" index={m.index}"
    if m.reject:
        s += f" rejected hint={m.reject_hint}" if t is MessageType.APP_RESP else " rejected"
    if m.snapshot is not None:
        s += f" snap={m.snapshot.term}/{m.snapshot.index}"
    if m.context:
        s += f" ctx={m.context.decode(errors='replace')}"
    return s


def log_of(storage: MemoryStorage) -> list[tuple[int, int]]:
    """(term, index) of every stored entry after the snapshot."""
    first, last = storage.first_index(), storage.last_index()
    return (
        [(e.term, e.index) for e in storage.entries(first, last + 1, None)] if last >= first else []
    )


@dataclass
class NodeBox:
    node: RawNode
    storage: MemoryStorage
    applied: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)


class Net:
    def __init__(
        self,
        voters: Iterable[int] = (1, 2, 3),
        *,
        learners: Iterable[int] = (),
        storages: dict[int, MemoryStorage] | None = None,
        seed: int = 0,
        pre_vote: bool = True,
        check_quorum: bool = True,
        election_tick: int = 10,
        max_size_per_msg: int = 1 << 20,
        max_inflight: int = 256,
    ) -> None:
        self.rng = random.Random(seed)
        self.pre_vote = pre_vote
        self.check_quorum = check_quorum
        self.election_tick = election_tick
        self.max_size_per_msg = max_size_per_msg
        self.max_inflight = max_inflight
        self.voters = tuple(voters)
        self.learners = tuple(learners)
        self.boxes: dict[int, NodeBox] = {}
        self.cut_links: set[tuple[int, int]] = set()
        self.drop_types: set[MessageType] = set()
        self.queue: list[Message] = []
        self.trace: list[str] = []
        storages = storages or {}
        for i in (*self.voters, *self.learners):
            storage = storages.get(i) or MemoryStorage.bootstrap(
                self.voters, learners=self.learners
            )
            self.add_node(i, storage)

    def config(self, node_id: int, applied: int = 0) -> Config:
        return Config(
            id=node_id,
            rng=random.Random(self.rng.random()),
            election_tick=self.election_tick,
            applied=applied,
            pre_vote=self.pre_vote,
            check_quorum=self.check_quorum,
            max_size_per_msg=self.max_size_per_msg,
            max_inflight=self.max_inflight,
        )

    def add_node(self, node_id: int, storage: MemoryStorage | None = None) -> NodeBox:
        storage = storage if storage is not None else MemoryStorage()
        box = NodeBox(RawNode(self.config(node_id), storage), storage)
        self.boxes[node_id] = box
        return box

    def restart(self, node_id: int) -> NodeBox:
        """Restart from storage: volatile state is gone, the application re-applies."""
        box = self.boxes[node_id]
        box.node = RawNode(self.config(node_id), box.storage)
        box.applied = [e for e in box.applied if e.index <= box.storage.snapshot().index]
        return box

    def node(self, node_id: int) -> RawNode:
        return self.boxes[node_id].node

    # --- driving -------------------------------------------------------------------------

    def process_ready(self, node_id: int) -> list[Message]:
        box = self.boxes[node_id]
        out: list[Message] = []
        while box.node.has_ready():
            rd = box.node.ready()
            if rd.snapshot is not None:
                box.storage.apply_snapshot(rd.snapshot)
            box.storage.append(rd.entries)
            if rd.hard_state is not None:
                box.storage.set_hard_state(rd.hard_state)
            out.extend(rd.messages)
            for e in rd.committed_entries:
                if e.type is EntryType.CONF_CHANGE:
                    box.node.apply_conf_change(decode(e.data, ConfChange))
                box.applied.append(e)
            box.read_states.extend(rd.read_states)
            box.node.advance(rd)
        return out

    def collect(self) -> None:
        for i in list(self.boxes):
            self.queue.extend(self.process_ready(i))

    def deliverable(self, m: Message) -> bool:
        return (
            (m.from_, m.to) not in self.cut_links
            and m.type not in self.drop_types
            and m.to in self.boxes
        )

    def _deliver(self, m: Message) -> None:
        if self.deliverable(m):
            self.trace.append(describe(m))
            self.boxes[m.to].node.step(m)

    def stabilize(self, max_rounds: int = 1000) -> None:
        for _ in range(max_rounds):
            self.collect()
            if not self.queue:
                return
            msgs, self.queue = self.queue, []
            for m in msgs:
                self._deliver(m)
        raise AssertionError("cluster did not stabilize")

    def deliver_matching(self, pred: Callable[[Message], bool]) -> list[Message]:
        """Collect Readies and deliver only the queued messages matching `pred`; the
        rest stay queued (delayed, not lost)."""
        self.collect()
        keep: list[Message] = []
        delivered: list[Message] = []
        for m in self.queue:
            if pred(m):
                delivered.append(m)
            else:
                keep.append(m)
        self.queue = keep
        for m in delivered:
            self._deliver(m)
        return delivered

    def drop_queued(self) -> None:
        self.collect()
        self.queue = []

    def tick(self, node_id: int, n: int = 1) -> None:
        for _ in range(n):
            self.boxes[node_id].node.tick()

    def tick_all(self, n: int = 1) -> None:
        for _ in range(n):
            for box in self.boxes.values():
                box.node.tick()
            self.stabilize()

    def campaign(self, node_id: int) -> None:
        self.node(node_id).campaign()
        self.stabilize()

    def elect(self, node_id: int) -> None:
        self.campaign(node_id)
        assert self.node(node_id).role is StateRole.LEADER, self.node(node_id).status()

    def propose(self, node_id: int, data: bytes) -> None:
        self.node(node_id).propose(data)
        self.stabilize()

    def conf_change(self, node_id: int, kind: ConfChangeType, target: int) -> None:
        self.node(node_id).propose_conf_change(ConfChange(kind, target))
        self.stabilize()

    # --- links ---------------------------------------------------------------------------

    def cut(self, a: int, b: int) -> None:
        self.cut_links |= {(a, b), (b, a)}

    def isolate(self, a: int) -> None:
        for b in self.boxes:
            if b != a:
                self.cut(a, b)

    def recover(self) -> None:
        self.cut_links.clear()
        self.drop_types.clear()

    # --- views ---------------------------------------------------------------------------

    def leaders(self) -> list[int]:
        return [i for i, b in self.boxes.items() if b.node.role is StateRole.LEADER]

    def data_applied(self, node_id: int) -> list[bytes]:
        return [
            e.data for e in self.boxes[node_id].applied if e.type is EntryType.NORMAL and e.data
        ]

    def terms(self) -> dict[int, int]:
        return {i: b.node.term for i, b in self.boxes.items()}
