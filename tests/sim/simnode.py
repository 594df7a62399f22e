"""One simulated manager: a RawNode, its simulated disk, the KV state machine, and the
driver loop (persist -> send -> apply -> advance) with crash points between every step."""

from __future__ import annotations

import enum
import random
from typing import TYPE_CHECKING

from shoal.manager.raft.rounds import EARLY_TYPES
from shoal.raft import (
    ConfChange,
    Config,
    ConfState,
    EntryType,
    MemoryStorage,
    Message,
    ProposalDropped,
    RawNode,
    Ready,
    Snapshot,
    SnapshotMetadata,
    StateRole,
    decode,
)
from tests.sim.disk import Batch, SimDisk, apply_batch
from tests.sim.history import PendingOp
from tests.sim.invariants import LogHashes
from tests.sim.kv import KV, Put

if TYPE_CHECKING:
    from tests.sim.simulation import Simulation

__all__ = ["CrashPoint", "NodeCrashed", "SimNode"]


class CrashPoint(enum.Enum):
    BEFORE_PERSIST = "before-persist"
    AFTER_WRITE = "after-write-before-sync"
    AFTER_SYNC = "after-sync-before-send"
    MID_SEND = "mid-send"
    AFTER_SEND = "after-send-before-apply"
    AFTER_APPLY = "after-apply-before-advance"


class NodeCrashed(Exception):
    pass


class SimNode:
    def __init__(self, sim: Simulation, node_id: int, disk: SimDisk) -> None:
        self.sim = sim
        self.id = node_id
        self.disk = disk
        self.raw: RawNode | None = None
        self.storage = MemoryStorage()
        self.kv = KV()
        self.log = LogHashes()
        self.conf_state = ConfState()
        self.applied = 0
        self.durable_commit = 0
        self.snap_index = 0
        self.leader_term = 0
        self.crash_at: CrashPoint | None = None
        self.pending_puts: dict[tuple[int, int], PendingOp] = {}
        self.unproposed: list[tuple[Put, PendingOp]] = []
        self.pending_reads: dict[bytes, PendingOp] = {}
        self.waiting_reads: list[tuple[int, PendingOp]] = []

    @property
    def up(self) -> bool:
        return self.raw is not None

    def __repr__(self) -> str:
        if self.raw is None:
            return f"n{self.id}(down)"
        return (
            f"n{self.id}({self.raw.role.name} t{self.raw.term} commit={self.raw.committed} "
            f"applied={self.applied} last={self.raw.last_index})"
        )

    # --- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        sim, sc = self.sim, self.sim.sc
        self.storage = self.disk.load()
        snap = self.storage.snapshot()
        self.kv = KV.restore(snap.data)
        self.conf_state = snap.metadata.conf_state
        self.applied = self.snap_index = snap.index
        self.durable_commit = self.storage.hard_state.commit
        self.log = LogHashes()
        if not snap.is_empty:
            sim.checker.on_snapshot(self.id, snap, self.log)
        first, last = self.storage.first_index(), self.storage.last_index()
        if last >= first:
            sim.checker.on_entries(
                self.id, tuple(self.storage.entries(first, last + 1, None)), self.log
            )
        if self.durable_commit:
            # A crash may leave an unsynced write on the disk after all: its commit index
            # is durable from now on, and the checker must know (it may be the highest).
            sim.checker.on_durable_commit(self.id, self.durable_commit, self.log)
        cfg = Config(
            id=self.id,
            rng=random.Random(sim.rng.getrandbits(64)),
            election_tick=sim.timing[0],  # the cluster's current timings, like a manager
            heartbeat_tick=sim.timing[1],  # that reads SwarmSpec.Raft when it starts
            idle_heartbeat_tick=sim.idle_heartbeat_tick(),
            applied=snap.index,
            max_inflight=sc.max_inflight,
            max_size_per_msg=sc.max_size_per_msg,
            pre_vote=sc.pre_vote,
            check_quorum=sc.check_quorum,
        )
        self.raw = RawNode(cfg, self.storage)
        self.leader_term = 0
        self.crash_at = None

    def crash(self) -> None:
        self.raw = None
        self.disk.crash(self.sim.rng)
        self.crash_at = None
        self.pending_puts.clear()
        self.unproposed.clear()
        self.pending_reads.clear()
        self.waiting_reads.clear()

    def stop(self) -> None:
        """Shut down for good (a removed member)."""
        self.raw = None
        self.pending_puts.clear()
        self.unproposed.clear()
        self.pending_reads.clear()
        self.waiting_reads.clear()

    def _point(self, p: CrashPoint) -> None:
        if self.crash_at is p:
            raise NodeCrashed(p.value)

    # --- client requests -----------------------------------------------------------------

    def client_put(self, op: PendingOp, seq: int) -> None:
        assert self.raw is not None and op.value is not None
        put = Put(op.client, seq, op.key, op.value)
        if self.sim.sc.batch_puts:  # proposed with the others of this tick (flush_puts)
            self.unproposed.append((put, op))
            return
        try:
            self.raw.propose(KV.encode_put(put))
        except ProposalDropped:
            self.sim.history.fail(op)
            return
        self.pending_puts[(op.client, seq)] = op

    def flush_puts(self) -> None:
        """Propose the puts gathered since the last flush as ONE entry, like the store's
        group commit (one Raft entry per group of transactions)."""
        if not self.unproposed or self.raw is None:
            return
        batch, self.unproposed = self.unproposed, []
        try:
            self.raw.propose(KV.encode_batch([put for put, _ in batch]))
        except ProposalDropped:
            for _, op in batch:
                self.sim.history.fail(op)
            return
        for put, op in batch:
            self.pending_puts[(put.client, put.seq)] = op

    def client_get(self, op: PendingOp) -> None:
        assert self.raw is not None
        ctx = b"r%d" % op.id
        try:
            self.raw.read_index(ctx)
        except ProposalDropped:
            self.sim.history.fail(op)
            return
        self.pending_reads[ctx] = op

    # --- the driver loop -----------------------------------------------------------------

    def process(self) -> None:
        raw = self.raw
        assert raw is not None
        self.flush_puts()
        while raw.has_ready():
            rd = raw.ready()
            if self.sim.sc.send_before_persist:  # a deliberately broken driver
                self._send(rd)
                self._persist(rd)
            elif self.sim.sc.leader_sends_early and raw.role is StateRole.LEADER:
                # the real driver (rounds.py): appends and heartbeats go out first, the
                # rest once the leader's own write is durable; nothing is stepped between
                early = [m for m in rd.messages if m.type in EARLY_TYPES]
                self._send_all(early)
                self._point(CrashPoint.BEFORE_PERSIST)
                self._persist(rd)
                self._send_all([m for m in rd.messages if m.type not in EARLY_TYPES])
            else:
                self._point(CrashPoint.BEFORE_PERSIST)
                self._persist(rd)
                self._send(rd)
            self._point(CrashPoint.AFTER_SEND)
            self._apply(rd)
            self._point(CrashPoint.AFTER_APPLY)
            raw.advance(rd)
            self._maybe_compact()
        if raw.role is StateRole.LEADER and raw.term != self.leader_term:
            self.leader_term = raw.term
            self.sim.checker.on_leader(self.id, raw.term, self.log)
            self.sim.trace(f"n{self.id} leads term {raw.term}")

    def _persist(self, rd: Ready) -> None:
        checker = self.sim.checker
        batch = Batch(snapshot=rd.snapshot, entries=rd.entries, hard_state=rd.hard_state)
        apply_batch(self.storage, batch)
        if rd.snapshot is not None:
            checker.on_snapshot(self.id, rd.snapshot, self.log)
        checker.on_entries(self.id, rd.entries, self.log)
        self.disk.write(batch)
        self._point(CrashPoint.AFTER_WRITE)
        self.disk.sync()
        if rd.hard_state is not None and rd.hard_state.commit != self.durable_commit:
            self.durable_commit = rd.hard_state.commit
            checker.on_durable_commit(self.id, self.durable_commit, self.log)
        self._point(CrashPoint.AFTER_SYNC)

    def _send(self, rd: Ready) -> None:
        self._send_all(rd.messages)

    def _send_all(self, messages: tuple[Message, ...] | list[Message]) -> None:
        net, now = self.sim.net, self.sim.now
        for i, m in enumerate(messages):
            if i:
                self._point(CrashPoint.MID_SEND)
            net.send(m, now)

    def _apply(self, rd: Ready) -> None:
        assert self.raw is not None
        if rd.snapshot is not None:
            self.kv = KV.restore(rd.snapshot.data)
            self.conf_state = rd.snapshot.metadata.conf_state
            self.applied = self.snap_index = rd.snapshot.index
        for e in rd.committed_entries:
            self.sim.checker.on_apply(self.id, e, self.durable_commit)
            if e.index != self.applied + 1:
                raise AssertionError(f"n{self.id} applied {e.index} after {self.applied}")
            self.applied = e.index
            if e.type is EntryType.CONF_CHANGE:
                cc = decode(e.data, ConfChange)
                self.conf_state = self.raw.apply_conf_change(cc)
                self.sim.on_conf_applied(self, cc)
            elif e.data:
                for put in KV.decode_puts(e.data):
                    self.kv.apply(put)
                    op = self.pending_puts.pop((put.client, put.seq), None)
                    if op is not None:
                        self.sim.history.complete(op)
        for rs in rd.read_states:
            op = self.pending_reads.pop(rs.context, None)
            if op is not None:
                self.waiting_reads.append((rs.index, op))
        if self.waiting_reads:
            still = []
            for index, op in self.waiting_reads:
                if index <= self.applied:
                    self.sim.history.complete(op, self.kv.get(op.key))
                else:
                    still.append((index, op))
            self.waiting_reads = still

    def _maybe_compact(self) -> None:
        sc = self.sim.sc
        if self.applied - self.snap_index < sc.compact_every:
            return
        meta = SnapshotMetadata(self.applied, self.storage.term(self.applied), self.conf_state)
        snap = Snapshot(meta, self.kv.snapshot())
        batch = Batch(snapshot=snap, app_snapshot=True, compact_to=self.applied - sc.keep_tail)
        apply_batch(self.storage, batch)
        self.disk.write(batch)
        self.disk.sync()
        self.snap_index = self.applied
