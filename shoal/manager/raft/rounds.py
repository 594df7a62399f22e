"""The Ready half of `RaftNode`'s round: persist, send, apply, advance; then snapshot and
announce leadership changes (see node.py for the whole loop).

A mixin of `RaftNode`: it runs only on the driver task, between two steps of the core, and
touches nothing but the fields declared below.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable

from shoal.manager.raft.config import RaftNodeConfig, StateMachine
from shoal.manager.raft.errors import NotLeader
from shoal.manager.raft.leadership import LeadershipNotifier
from shoal.manager.raft.outbox import Outbox
from shoal.manager.raft.pending import Proposals, Reads
from shoal.manager.raft.storage import SQLiteStorage
from shoal.raft import (
    ConfChange,
    EntryType,
    Message,
    MessageType,
    RawNode,
    Ready,
    StateRole,
    decode,
)

__all__ = ["EARLY_TYPES", "ReadyRounds"]

# What a leader may send before its own write of the same Ready is durable (Raft thesis
# 10.2.1, etcd's "write to its disk in parallel with replicating"): appends and heartbeats
# carry nothing the leader promised on disk. It is safe here because the driver steps no
# message while it waits for the write, so no acknowledgement can commit an entry before
# the leader holds it durably too. Votes and everything else wait for the write.
EARLY_TYPES = frozenset({MessageType.APP, MessageType.HEARTBEAT, MessageType.SNAP})

log = logging.getLogger("shoal.manager.raft.node")


class ReadyRounds:
    id: int
    config: RaftNodeConfig
    _storage: SQLiteStorage
    _sm: StateMachine
    _raw: RawNode
    _inbox: deque[Callable[[], None]]
    _outbox: Outbox
    _proposals: Proposals
    _reads: Reads
    _applied: int
    _snap_index: int
    _term_start: tuple[int, int]
    _lead_seen: int
    _applied_mark: int
    _applied_moved: asyncio.Event
    _leadership: LeadershipNotifier
    _changed: asyncio.Event

    @property
    def leader_ready(self) -> bool:
        raise NotImplementedError

    def _step(self, m: Message) -> None:
        raise NotImplementedError

    async def _handle_ready(self, rd: Ready) -> None:
        st = self._storage
        messages = rd.messages
        if messages and self._raw.role is StateRole.LEADER:
            early = tuple(m for m in messages if m.type in EARLY_TYPES)
            if early:
                self._send(early)  # followers write while we write (see EARLY_TYPES)
                messages = tuple(m for m in messages if m.type not in EARLY_TYPES)
        if rd.must_sync:
            await st.persist(
                snapshot=rd.snapshot, entries=rd.entries, hard_state=rd.hard_state, sync=True
            )
        elif rd.hard_state is not None:
            # Only the commit index moved: no fsync (it is learnt again if lost), so the
            # write is cheap enough to do right here.
            st.save(hard_state=rd.hard_state, sync=False)
        if rd.entries and self._raw.role is StateRole.LEADER:
            self._note_term_start(rd)
        self._send(messages)
        self._apply(rd)
        self._raw.advance(rd)

    def _note_term_start(self, rd: Ready) -> None:
        term = self._raw.term
        if self._term_start[0] == term:
            return
        for e in rd.entries:
            if e.term == term:
                self._term_start = (term, e.index)
                return

    def _send(self, messages: tuple[Message, ...]) -> None:
        for m in messages:
            if m.to == self.id:
                self._inbox.append(functools.partial(self._step, m))
            else:
                self._outbox.put(m)
        self._outbox.flush()  # what may be written at once is (one envelope per peer)

    def _apply(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self._sm.restore(rd.snapshot.data)
            self._applied = self._snap_index = rd.snapshot.index
            self._proposals.fail_upto(rd.snapshot.index, NotLeader("raft: replaced by a snapshot"))
            log.info("raft %x: restored snapshot at index %d", self.id, rd.snapshot.index)
        for e in rd.committed_entries:
            if e.type is EntryType.CONF_CHANGE:
                cc = decode(e.data, ConfChange)
                cs = self._raw.apply_conf_change(cc)
                log.info(
                    "raft %x: applied %s of %x at %d: voters %s learners %s",
                    self.id,
                    cc.type.name,
                    cc.node_id,
                    e.index,
                    _ids(cs.voters),
                    _ids(cs.learners),
                )
            elif e.data:
                self._sm.apply(e.index, e.data)
            self._applied = e.index
            self._proposals.applied(e.index, e.term)
        for rs in rd.read_states:
            self._reads.released(rs.context, rs.index)
        self._reads.applied(self._applied)

    async def _maybe_snapshot(self) -> None:
        c = self.config
        if self._applied - self._snap_index < c.snapshot_every:
            return
        index, data = self._applied, self._sm.snapshot()
        await self._storage.persist_snapshot(
            index, self._raw.conf_state, data, compact_to=index - c.keep_tail
        )
        self._snap_index = index
        log.info("raft %x: snapshot at %d (%d bytes), log compacted", self.id, index, len(data))

    def _after_round(self) -> None:
        raw = self._raw
        if raw.lead != self._lead_seen:
            if self._lead_seen == self.id:
                lost = NotLeader(f"raft {self.id:x}: lost leadership", raw.lead)
                self._proposals.fail_all(lost)
            self._reads.fail_requested(NotLeader("raft: leader changed", raw.lead))
            log.info("raft %x: leader is now %x (term %d)", self.id, raw.lead, raw.term)
            self._lead_seen = raw.lead
        self._leadership.announce(self.leader_ready)
        self._changed.set()
        self._changed = asyncio.Event()
        if self._applied != self._applied_mark:  # entries or a snapshot applied
            self._applied_mark = self._applied
            self._applied_moved.set()
            self._applied_moved = asyncio.Event()


def _ids(ids: tuple[int, ...]) -> str:
    return "[" + ", ".join(f"{i:x}" for i in ids) + "]"
