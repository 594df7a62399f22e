"""RawNode: the application's handle on one Raft node.

The application drives it from a single task:

    node.tick()                      every tick interval (e.g. 100 ms)
    node.step(msg)                   for every message received from a peer
    node.propose(data) / propose_conf_change(cc) / read_index(ctx) / transfer_leadership(to)
    while node.has_ready():
        rd = node.ready()
        persist rd.snapshot, rd.entries, rd.hard_state   (durably: fsync when rd.must_sync)
        send rd.messages
        apply rd.snapshot, then rd.committed_entries in order (apply_conf_change for
        CONF_CHANGE entries); serve rd.read_states once applied >= their index
        node.advance(rd)

See `Ready` for why the order matters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from shoal.raft.config import Config
from shoal.raft.core import Raft
from shoal.raft.errors import ConfigError, ProposalDropped, RaftError
from shoal.raft.messages import (
    LOCAL_MESSAGES,
    RESPONSE_MESSAGES,
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
    encode,
)
from shoal.raft.progress import ProgressState
from shoal.raft.readonly import ReadState
from shoal.raft.roles import SoftState, StateRole
from shoal.raft.storage import Storage

__all__ = ["ProgressView", "RawNode", "Ready", "Status"]

MT = MessageType


@dataclass(frozen=True, slots=True)
class Ready:
    """A batch of work handed to the application. Handle it in this order:

    1. Persist `snapshot` (if any), `entries` (replacing any conflicting suffix of the
       stored log) and `hard_state` (if any), durably — fsync when `must_sync`. They belong
       together: write them atomically (one transaction) if the storage allows.
    2. Only then send `messages`. A vote granted, an append acknowledged or a commit index
       announced by these messages is a promise that the data above survives a crash;
       sending first lets a crash break Raft's safety (two leaders in a term, lost
       committed entries).
    3. Apply `snapshot` to the state machine, then `committed_entries` in index order
       (calling `RawNode.apply_conf_change` for CONF_CHANGE entries); they may include
       entries persisted in step 1 of this same Ready, never unpersisted ones. Serve each
       of `read_states` once the applied index reaches its `index`.
    4. Call `RawNode.advance(ready)`. No new Ready is produced before that.

    `soft_state`/`hard_state` are None when unchanged since the previous Ready.
    """

    soft_state: SoftState | None
    hard_state: HardState | None
    entries: tuple[Entry, ...]
    snapshot: Snapshot | None
    committed_entries: tuple[Entry, ...]
    messages: tuple[Message, ...]
    read_states: tuple[ReadState, ...]
    must_sync: bool

    def contains_updates(self) -> bool:
        return bool(
            self.soft_state is not None
            or self.hard_state is not None
            or self.entries
            or self.snapshot is not None
            or self.committed_entries
            or self.messages
            or self.read_states
        )


@dataclass(frozen=True, slots=True)
class ProgressView:
    match: int
    next: int
    state: ProgressState
    is_learner: bool
    recent_active: bool
    pending_snapshot: int


@dataclass(frozen=True, slots=True)
class Status:
    id: int
    hard_state: HardState
    soft_state: SoftState
    applied: int
    last_index: int
    conf_state: ConfState
    lead_transferee: int
    progress: Mapping[int, ProgressView] = field(default_factory=dict)  # leaders only


class RawNode:
    def __init__(self, config: Config, storage: Storage) -> None:
        self._raft = Raft(config, storage)
        self._prev_soft = self._raft.soft_state()
        self._prev_hard = self._raft.hard_state()
        self._pending: Ready | None = None

    # --- inputs -------------------------------------------------------------------------

    def tick(self) -> None:
        self._raft.tick()

    def ticks_until_due(self) -> int:
        """How many ticks may pass with no input before one does anything but count: the
        ticks before the returned one are quiet (no Ready, nothing sent), so a driver may
        sleep until it and catch the quiet ones up (see `Raft.ticks_until_due`)."""
        return self._raft.ticks_until_due()

    def set_timing(
        self, election_tick: int, heartbeat_tick: int, idle_heartbeat_tick: int = 0
    ) -> None:
        """Change the election and heartbeat timeouts (in ticks) from the next tick on;
        ConfigError (nothing changed) unless election_tick > heartbeat_tick >= 1 and
        idle_heartbeat_tick is 0 or at most election_tick / 2 (see `Config`)."""
        self._raft.set_timing(election_tick, heartbeat_tick, idle_heartbeat_tick)

    def campaign(self) -> None:
        """Start an election now (e.g. a freshly bootstrapped single node)."""
        self._raft.step(Message(MT.HUP, self.id, self.id))

    def forget_leader(self, lead: int) -> None:
        """The transport saw the connection of `lead` (our leader) end: stop trusting its
        lease and campaign soon (see `Raft.forget_leader`). Liveness only."""
        self._raft.forget_leader(lead)

    def step(self, m: Message) -> None:
        """Hand over a message received from a peer. A forwarded proposal, read or transfer
        that we cannot take is dropped silently (its proposer times out and retries) —
        even one of our own that came back to us through a stale leader."""
        if m.type in LOCAL_MESSAGES:
            raise ConfigError(f"raft: cannot step local message {m.type.name} from a peer")
        if m.to != self.id:
            return  # misrouted (e.g. meant for a previous incarnation of this address)
        if m.type in RESPONSE_MESSAGES and m.from_ not in self._raft.trk.progress:
            return  # a response from a node no longer (or not yet) in our configuration
        try:
            self._raft.step(m)
        except ProposalDropped:
            pass

    def propose(self, data: bytes) -> None:
        """Propose an entry; raises ProposalDropped when it cannot be accepted now
        (no known leader, transfer under way). Acceptance is not commitment: watch for
        the entry among committed entries and time out."""
        self._raft.step(Message(MT.PROP, self.id, self.id, entries=(Entry(0, 0, data=data),)))

    def propose_conf_change(self, cc: ConfChange) -> None:
        """Propose a membership change. The leader refuses it (ProposalDropped, or a silent
        drop if forwarded) while another change is not yet applied."""
        e = Entry(0, 0, EntryType.CONF_CHANGE, encode(cc))
        self._raft.step(Message(MT.PROP, self.id, self.id, entries=(e,)))

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Make a committed ConfChange take effect; call it when applying its entry."""
        return self._raft.apply_conf_change(cc)

    def read_index(self, ctx: bytes) -> None:
        """Request a linearizable read point; a ReadState with this (unique) `ctx` appears
        in a later Ready, unless leadership changes first (then time out and retry)."""
        self._raft.step(Message(MT.READ_INDEX, self.id, self.id, context=ctx))

    def transfer_leadership(self, to: int) -> None:
        """Ask the leader to hand leadership to `to` (use before removing the leader)."""
        self._raft.step(Message(MT.TRANSFER_LEADER, from_=to, to=self.id))

    def report_unreachable(self, node: int) -> None:
        self._raft.step(Message(MT.UNREACHABLE, from_=node, to=self.id))

    def report_snapshot(self, node: int, *, ok: bool) -> None:
        """Tell the leader whether the snapshot it sent to `node` was delivered."""
        self._raft.step(Message(MT.SNAP_STATUS, from_=node, to=self.id, reject=not ok))

    # --- outputs ------------------------------------------------------------------------

    def has_ready(self) -> bool:
        if self._pending is not None:
            return False
        r = self._raft
        return bool(
            r.msgs
            or r.log.unstable.entries
            or r.log.unstable.snapshot is not None
            or r.read_states
            or r.log.has_next_committed_entries()
            or r.soft_state() != self._prev_soft
            or r.hard_state() != self._prev_hard
        )

    def ready(self) -> Ready:
        if self._pending is not None:
            raise RaftError("raft: ready() called again before advance()")
        r = self._raft
        soft, hard = r.soft_state(), r.hard_state()
        rd = Ready(
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hard if hard != self._prev_hard else None,
            entries=tuple(r.log.unstable.entries),
            snapshot=r.log.unstable.snapshot,
            committed_entries=tuple(r.log.next_committed_entries()),
            messages=tuple(r.msgs),
            read_states=tuple(r.read_states),
            must_sync=bool(
                r.log.unstable.entries
                or r.log.unstable.snapshot is not None
                or hard.term != self._prev_hard.term
                or hard.vote != self._prev_hard.vote
            ),
        )
        r.msgs = []
        r.read_states = []
        self._prev_soft = soft
        self._pending = rd
        return rd

    def advance(self, rd: Ready) -> None:
        """The application persisted, sent and applied everything in `rd`."""
        if rd is not self._pending:
            raise RaftError("raft: advance() with a Ready that is not the outstanding one")
        log = self._raft.log
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        if rd.snapshot is not None:
            log.stable_snap_to(rd.snapshot.index)
            log.applied_to(max(log.applied, rd.snapshot.index))
        if rd.entries:
            last = rd.entries[-1]
            log.stable_to(last.index, last.term)
        if rd.committed_entries:
            log.applied_to(rd.committed_entries[-1].index)
        self._pending = None

    # --- introspection ------------------------------------------------------------------

    @property
    def id(self) -> int:
        return self._raft.id

    @property
    def term(self) -> int:
        return self._raft.term

    @property
    def lead(self) -> int:
        return self._raft.lead

    @property
    def role(self) -> StateRole:
        return self._raft.state

    @property
    def committed(self) -> int:
        return self._raft.log.committed

    @property
    def applied(self) -> int:
        return self._raft.log.applied

    @property
    def last_index(self) -> int:
        return self._raft.log.last_index()

    @property
    def conf_state(self) -> ConfState:
        return self._raft.trk.conf_state()

    def status(self) -> Status:
        r = self._raft
        progress: dict[int, ProgressView] = {}
        if r.state is StateRole.LEADER:
            for i, pr in r.trk.progress.items():
                progress[i] = ProgressView(
                    pr.match,
                    pr.next,
                    pr.state,
                    pr.is_learner,
                    pr.recent_active,
                    pr.pending_snapshot,
                )
        return Status(
            id=r.id,
            hard_state=r.hard_state(),
            soft_state=r.soft_state(),
            applied=r.log.applied,
            last_index=r.log.last_index(),
            conf_state=r.trk.conf_state(),
            lead_transferee=r.lead_transferee,
            progress=progress,
        )
