"""The Raft state machine: terms, roles, elections, membership. Pure: no I/O, no clock
(time is `tick()` calls), no randomness of its own (an injected RandomSource).

The role is a swapped pair of functions (`step_fn` for messages, `tick_fn` for time);
`step()` first applies the rules common to all roles (term comparison, pre-vote, the
check-quorum lease, vote requests) and then hands the message to the role. Outgoing
messages are only appended to `msgs`; the RawNode hands them out in a Ready.

Membership: one server at a time. A ConfChange entry takes effect when the application
applies it (`apply_conf_change`), and the leader accepts a new one only once the previous
one is applied (`pending_conf_index <= applied`). A node with a committed but unapplied
conf change does not campaign. See docs/design/raft.md for why this is safe.
"""

from __future__ import annotations

from collections.abc import Callable

from shoal.raft import follower, leader
from shoal.raft.config import Config
from shoal.raft.errors import InvariantViolation
from shoal.raft.log import RaftLog
from shoal.raft.messages import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    HardState,
    Message,
    MessageType,
    Snapshot,
)
from shoal.raft.progress import Progress
from shoal.raft.quorum import ProgressTracker, VoteResult
from shoal.raft.readonly import ReadOnly, ReadState
from shoal.raft.roles import TRANSFER_CONTEXT, CampaignType, SoftState, StateRole
from shoal.raft.storage import Storage

__all__ = ["Raft"]

MT = MessageType


class Raft:
    def __init__(self, cfg: Config, storage: Storage) -> None:
        cfg.validate()
        self.id = cfg.id
        self.rng = cfg.rng
        self.log = RaftLog(storage, cfg.max_committed_size_per_ready)
        self.max_msg_size = cfg.max_size_per_msg
        self.trk = ProgressTracker(cfg.max_inflight)
        self.election_timeout = cfg.election_tick
        self.heartbeat_timeout = cfg.heartbeat_tick
        self.idle_heartbeat_timeout = cfg.idle_heartbeat_tick
        self.beat_commit = -1  # the lowest commit index the last heartbeat round carried
        self.check_quorum = cfg.check_quorum
        self.pre_vote = cfg.pre_vote
        self.term = 0
        self.vote = NONE
        self.lead = NONE
        self.state = StateRole.FOLLOWER
        self.is_learner = False
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.election_timeout
        self.lead_transferee = NONE
        self.pending_conf_index = 0
        self.read_only = ReadOnly()
        self.pending_read_index: list[Message] = []
        self.step_fn: Callable[[Raft, Message], None] = follower.step_follower
        self.tick_fn: Callable[[], None] = self.tick_election

        hs, cs = storage.initial_state()
        self.switch_config(frozenset(cs.voters), frozenset(cs.learners))
        if hs != HardState():
            self._load_hard_state(hs)
        if cfg.applied > self.log.applied:
            self.log.applied_to(cfg.applied)
        self.become_follower(self.term, NONE)

    def __repr__(self) -> str:
        return (
            f"Raft(id={self.id}, {self.state.name}, term={self.term}, vote={self.vote}, "
            f"lead={self.lead}, last={self.log.last_index()}, {self.log!r})"
        )

    def _load_hard_state(self, hs: HardState) -> None:
        if hs.commit > self.log.last_index():
            raise InvariantViolation(
                f"{self.id}: persisted commit {hs.commit} is past the last index "
                f"{self.log.last_index()}: was the log lost?"
            )
        # A commit older than the snapshot is possible when commit-only changes were not
        # synced; the snapshot proves its index committed (also when the log keeps a tail
        # below it, so the first index does not tell).
        snapshot_index = self.log.snapshot().metadata.index
        self.log.committed = max(hs.commit, self.log.committed, snapshot_index)
        self.term = hs.term
        self.vote = hs.vote

    # --- state --------------------------------------------------------------------------

    def soft_state(self) -> SoftState:
        return SoftState(lead=self.lead, role=self.state)

    def hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.log.committed)

    def send(self, m: Message) -> None:
        self.msgs.append(m)

    def promotable(self) -> bool:
        return self.id in self.trk.voters and not self.log.has_pending_snapshot()

    # --- role changes -------------------------------------------------------------------

    def reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.beat_commit = -1
        self.randomized_election_timeout = self.election_timeout + self.rng.randrange(
            self.election_timeout
        )
        self.lead_transferee = NONE
        self.trk.reset_votes()
        last = self.log.last_index()
        for i, pr in self.trk.progress.items():
            fresh = Progress(last + 1, self.trk.max_inflight, is_learner=pr.is_learner)
            fresh.recent_active = False
            if i == self.id:
                fresh.match = last
            self.trk.progress[i] = fresh
        self.pending_conf_index = 0
        self.read_only = ReadOnly()
        self.pending_read_index = []

    def become_follower(self, term: int, lead: int) -> None:
        self.step_fn = follower.step_follower
        self.reset(term)
        self.tick_fn = self.tick_election
        self.lead = lead
        self.state = StateRole.FOLLOWER

    def become_pre_candidate(self) -> None:
        # Neither the term nor the vote change: a pre-election disturbs nobody.
        if self.state is StateRole.LEADER:
            raise InvariantViolation("invalid transition [leader -> pre-candidate]")
        self.step_fn = follower.step_candidate
        self.trk.reset_votes()
        self.tick_fn = self.tick_election
        self.lead = NONE
        self.state = StateRole.PRE_CANDIDATE

    def become_candidate(self) -> None:
        if self.state is StateRole.LEADER:
            raise InvariantViolation("invalid transition [leader -> candidate]")
        self.step_fn = follower.step_candidate
        self.reset(self.term + 1)
        self.tick_fn = self.tick_election
        self.vote = self.id
        self.state = StateRole.CANDIDATE

    def become_leader(self) -> None:
        if self.state is StateRole.FOLLOWER:
            raise InvariantViolation("invalid transition [follower -> leader]")
        self.step_fn = leader.step_leader
        self.reset(self.term)
        self.tick_fn = self.tick_heartbeat
        self.lead = self.id
        self.state = StateRole.LEADER
        me = self.trk.progress[self.id]
        me.become_replicate()
        me.recent_active = True
        leader.append_entry(self, [b""])
        # No conf change before this empty entry is applied: everything of earlier terms is
        # then applied, and an entry of our own term is committed (the fix of the thesis'
        # single-server change bug, stricter than etcd which waits for the earlier ones only).
        self.pending_conf_index = self.log.last_index()

    # --- time ---------------------------------------------------------------------------

    def tick(self) -> None:
        self.tick_fn()

    def set_timing(
        self, election_tick: int, heartbeat_tick: int, idle_heartbeat_tick: int = 0
    ) -> None:
        """New election/heartbeat timeouts, effective from the next tick. Elapsed counters
        are kept (time already passed without a leader still counts); the randomised
        timeout is drawn again within the new range. Safety never depends on timing."""
        Config(
            id=self.id,
            rng=self.rng,
            election_tick=election_tick,
            heartbeat_tick=heartbeat_tick,
            idle_heartbeat_tick=idle_heartbeat_tick,
        ).validate()
        self.election_timeout = election_tick
        self.heartbeat_timeout = heartbeat_tick
        self.idle_heartbeat_timeout = idle_heartbeat_tick
        self.randomized_election_timeout = election_tick + self.rng.randrange(election_tick)

    def forget_leader(self, lead: int) -> None:
        """A follower whose transport saw `lead`'s connection end stops trusting its lease
        (etcd's ForgetLeader): it no longer knows a leader, grants votes at once (check
        quorum's lease no longer holds) and campaigns soon instead of after a whole
        election timeout. The survivors take turns by ID (1 tick for the lowest, then
        election_tick/2 more per rank) rather than drawing at random: both of two
        survivors noticing the same kill at once split the vote one time in five when
        they drew, and a split costs a whole timeout. A live leader's next heartbeat
        restores it, and pre-vote keeps a false alarm from disturbing the others:
        liveness only, safety never depends on it. Ignored unless we follow `lead`."""
        if self.state is not StateRole.FOLLOWER or lead == NONE or self.lead != lead:
            return
        self.lead = NONE
        others = sorted(v for v in self.trk.voters if v != lead)
        rank = others.index(self.id) if self.id in others else len(others)
        remaining = 1 + rank * max(1, self.election_timeout // 2)
        self.election_elapsed = max(
            self.election_elapsed, self.randomized_election_timeout - remaining
        )

    def ticks_until_due(self) -> int:
        """The first of the coming ticks (1 = the next) that may do more than count, if no
        input comes first: the ticks before it only add to `election_elapsed` and
        `heartbeat_elapsed` (no message, no role, term, lead, commit or read change), so a
        driver may sleep until it and step the quiet ones in a burst (before any input,
        see raft-driver.md "Due ticks"). Never later than the truth; may be earlier."""
        if self.state is not StateRole.LEADER:  # tick_election
            return max(1, self.randomized_election_timeout - self.election_elapsed)
        due = max(1, self.election_timeout - self.election_elapsed)  # check quorum, transfer
        beat = self.heartbeat_timeout
        if self.idle_heartbeat_timeout > beat and leader.is_idle(self):
            beat = self.idle_heartbeat_timeout
        return min(due, max(1, beat - self.heartbeat_elapsed))

    def tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self.step(Message(MT.HUP, from_=self.id, to=self.id))

    def tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.step(Message(MT.CHECK_QUORUM, from_=self.id, to=self.id))
            if self.state is StateRole.LEADER:
                self.lead_transferee = NONE  # a transfer that did not finish in time
        if self.state is not StateRole.LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            if self.heartbeat_elapsed < self.idle_heartbeat_timeout and leader.is_idle(self):
                return  # nothing for the followers but "still here": say it less often
            self.heartbeat_elapsed = 0
            self.step(Message(MT.BEAT, from_=self.id, to=self.id))

    # --- messages -----------------------------------------------------------------------

    def step(self, m: Message) -> None:
        if m.term > self.term:
            if m.type is MT.VOTE or m.type is MT.PRE_VOTE:
                force = m.context == TRANSFER_CONTEXT
                in_lease = (
                    self.check_quorum
                    and self.lead != NONE
                    and self.election_elapsed < self.election_timeout
                )
                if in_lease and not force:
                    return  # we heard from a live leader recently: ignore the disrupter
            if m.type is MT.PRE_VOTE or (m.type is MT.PRE_VOTE_RESP and not m.reject):
                pass  # pre-votes never change our term
            elif m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
                self.become_follower(m.term, m.from_)
            else:
                self.become_follower(m.term, NONE)
        elif 0 < m.term < self.term:
            if (self.check_quorum or self.pre_vote) and m.type in (MT.HEARTBEAT, MT.APP):
                # A stale leader (e.g. back from a partition) learns our term and steps down;
                # without this it could never hear of it, since we ignore its messages.
                self.send(Message(MT.APP_RESP, from_=self.id, to=m.from_, term=self.term))
            elif m.type is MT.PRE_VOTE:
                self.send(Message(MT.PRE_VOTE_RESP, self.id, m.from_, term=self.term, reject=True))
            return

        if m.type is MT.HUP:
            self.hup(CampaignType.PRE_ELECTION if self.pre_vote else CampaignType.ELECTION)
        elif m.type is MT.VOTE or m.type is MT.PRE_VOTE:
            self._handle_vote_request(m)
        else:
            self.step_fn(self, m)

    def _handle_vote_request(self, m: Message) -> None:
        can_vote = (
            self.vote == m.from_
            or (self.vote == NONE and self.lead == NONE)
            or (m.type is MT.PRE_VOTE and m.term > self.term)
        )
        resp = MT.VOTE_RESP if m.type is MT.VOTE else MT.PRE_VOTE_RESP
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            # Answer with the request's term: a granted pre-vote is for a term we are not in.
            self.send(Message(resp, self.id, m.from_, term=m.term))
            if m.type is MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.from_
        else:
            self.send(Message(resp, self.id, m.from_, term=self.term, reject=True))

    # --- elections ----------------------------------------------------------------------

    def hup(self, kind: CampaignType) -> None:
        if self.state is StateRole.LEADER or not self.promotable():
            return
        if self.log.has_unapplied_conf_change():
            return  # our configuration may be stale until it is applied
        self.campaign(kind)

    def campaign(self, kind: CampaignType) -> None:
        if not self.promotable():
            return
        if kind is CampaignType.PRE_ELECTION:
            self.become_pre_candidate()
            vote_type, term = MT.PRE_VOTE, self.term + 1
        else:
            self.become_candidate()
            vote_type, term = MT.VOTE, self.term
        if self.poll(self.id, True) is VoteResult.WON:  # a single-voter cluster
            if kind is CampaignType.PRE_ELECTION:
                self.campaign(CampaignType.ELECTION)
            else:
                self.become_leader()
            return
        ctx = TRANSFER_CONTEXT if kind is CampaignType.TRANSFER else b""
        last, last_term = self.log.last_index(), self.log.last_term()
        for v in sorted(self.trk.voters):
            if v != self.id:
                self.send(Message(vote_type, self.id, v, term, last_term, last, context=ctx))

    def poll(self, node: int, granted: bool) -> VoteResult:
        self.trk.record_vote(node, granted)
        return self.trk.tally_votes()

    # --- membership and snapshots -------------------------------------------------------

    def switch_config(self, voters: frozenset[int], learners: frozenset[int]) -> None:
        self.trk.set_config(voters, learners, self.log.last_index() + 1)
        self.is_learner = self.id in learners

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Make an applied ConfChange take effect; invalid changes are no-ops (every node
        applies the same entries, so they all ignore the same ones)."""
        voters, learners, n = set(self.trk.voters), set(self.trk.learners), cc.node_id
        if cc.type is ConfChangeType.ADD_NODE:
            learners.discard(n)
            voters.add(n)
        elif cc.type is ConfChangeType.ADD_LEARNER:
            if n not in voters:
                learners.add(n)
        else:
            voters.discard(n)
            learners.discard(n)
        if not voters:
            return self.trk.conf_state()
        self.switch_config(frozenset(voters), frozenset(learners))
        if self.state is StateRole.LEADER:
            leader.after_conf_change(self)
        return self.trk.conf_state()

    def restore(self, s: Snapshot) -> bool:
        """Follower: install a leader's snapshot. False if it brings nothing new."""
        if s.index <= self.log.committed:
            return False
        if self.state is not StateRole.FOLLOWER:
            raise InvariantViolation(f"{self.id} asked to restore a snapshot as {self.state.name}")
        if self.log.match_term(s.index, s.term):
            self.log.commit_to(s.index)  # we have the entries: just fast-forward the commit
            return False
        # A new member may not be in the snapshot's configuration yet (it was added after
        # the snapshot); it learns of itself by applying the entries that follow.
        self.log.restore(s)
        cs = s.metadata.conf_state
        self.trk = ProgressTracker(self.trk.max_inflight)
        self.switch_config(frozenset(cs.voters), frozenset(cs.learners))
        return True
