"""The leader: proposals, replication (probe / pipelined replicate / snapshot), commit by
quorum, heartbeats and check-quorum, ReadIndex, and leadership transfer.

Commit rule (§5.4.2, figure 8): the commit index only moves by counting replicas to an
entry of the leader's own term; earlier entries commit with it, never by counting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shoal.raft.errors import (
    CompactedError,
    InvariantViolation,
    MessageDecodeError,
    ProposalDropped,
    SnapshotTemporarilyUnavailable,
)
from shoal.raft.messages import (
    NONE,
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    Message,
    MessageType,
    decode,
)
from shoal.raft.progress import Progress, ProgressState
from shoal.raft.quorum import VoteResult, vote_result
from shoal.raft.readonly import ReadState
from shoal.raft.roles import StateRole

if TYPE_CHECKING:
    from shoal.raft.core import Raft

__all__ = ["after_conf_change", "append_entry", "bcast_append", "is_idle", "step_leader"]

MT = MessageType
PS = ProgressState


def step_leader(r: Raft, m: Message) -> None:
    t = m.type
    if t is MT.BEAT:
        bcast_heartbeat(r, r.read_only.last_pending_context() or b"")
        return
    if t is MT.CHECK_QUORUM:
        if not r.trk.quorum_active():
            r.become_follower(r.term, NONE)  # we cannot commit anything: let others lead
        for i, other in r.trk.progress.items():
            if i != r.id:
                other.recent_active = False
        return
    if t is MT.PROP:
        _propose(r, m)
        return
    if t is MT.READ_INDEX:
        _read_index(r, m)
        return
    pr = r.trk.progress.get(m.from_)
    if pr is None:
        return
    if t is MT.APP_RESP:
        _handle_append_response(r, m, pr)
    elif t is MT.HEARTBEAT_RESP:
        _handle_heartbeat_response(r, m, pr)
    elif t is MT.SNAP_STATUS:
        if pr.state is not PS.SNAPSHOT:
            return
        if m.reject:
            pr.pending_snapshot = 0  # probe from match, not from the lost snapshot
        pr.become_probe()
        pr.paused = True  # wait for a heartbeat answer before sending again
    elif t is MT.UNREACHABLE:
        if pr.state is PS.REPLICATE:
            pr.become_probe()
    elif t is MT.TRANSFER_LEADER:
        _transfer(r, m.from_, pr)


# --- proposals ------------------------------------------------------------------------


def _propose(r: Raft, m: Message) -> None:
    if not m.entries:
        raise InvariantViolation(f"raft {r.id}: stepped an empty proposal")
    if r.id not in r.trk.voters:
        raise ProposalDropped(f"raft {r.id}: not a voter of the current configuration")
    if r.lead_transferee != NONE:
        raise ProposalDropped(f"raft {r.id}: leadership transfer to {r.lead_transferee}")
    pending = r.pending_conf_index
    for i, e in enumerate(m.entries):
        if e.type is EntryType.CONF_CHANGE:
            reason = _conf_change_refusal(r, e, pending)
            if reason:
                raise ProposalDropped(f"raft {r.id}: conf change refused: {reason}")
            pending = r.log.last_index() + i + 1
    r.pending_conf_index = pending
    append_entry(r, [e.data for e in m.entries], [e.type for e in m.entries])
    bcast_append(r)


def _conf_change_refusal(r: Raft, e: Entry, pending: int) -> str | None:
    if pending > r.log.applied:
        return f"change at index {pending} not applied yet (applied {r.log.applied})"
    try:
        cc = decode(e.data, ConfChange)
    except MessageDecodeError as exc:
        return str(exc)
    n, voters = cc.node_id, r.trk.voters
    if cc.type is ConfChangeType.ADD_NODE and n in voters:
        return f"{n} is already a voter"
    if cc.type is ConfChangeType.ADD_LEARNER and (n in voters or n in r.trk.learners):
        return f"{n} is already a member"
    if cc.type is ConfChangeType.REMOVE_NODE:
        if n not in voters and n not in r.trk.learners:
            return f"{n} is not a member"
        if voters == {n}:
            return "cannot remove the last voter"
    return None


def append_entry(r: Raft, datas: list[bytes], types: list[EntryType] | None = None) -> None:
    li = r.log.last_index()
    ents = [
        Entry(r.term, li + 1 + i, types[i] if types else EntryType.NORMAL, d)
        for i, d in enumerate(datas)
    ]
    li = r.log.append(ents)
    # Counting our own unpersisted entries is safe: nobody else acknowledges them before
    # the Ready that persists them is handled (persist before send).
    r.trk.progress[r.id].maybe_update(li)
    _maybe_commit(r)


def _maybe_commit(r: Raft) -> bool:
    if not r.log.maybe_commit(r.trk.committed(), r.term):
        return False
    if r.pending_read_index:
        waiting, r.pending_read_index = r.pending_read_index, []
        for m in waiting:
            _send_read_index(r, m)
    return True


def after_conf_change(r: Raft) -> None:
    """The leader just applied a membership change."""
    if r.id not in r.trk.voters:
        r.become_follower(r.term, NONE)  # removed (or demoted): stop leading
        return
    if r.lead_transferee != NONE and r.lead_transferee not in r.trk.voters:
        r.lead_transferee = NONE
    # A smaller quorum may commit more; new members get probed.
    if _maybe_commit(r):
        bcast_append(r)
    else:
        for i in r.trk.progress:
            if i != r.id:
                maybe_send_append(r, i, send_if_empty=False)


# --- replication ----------------------------------------------------------------------


def bcast_append(r: Raft) -> None:
    for i in r.trk.progress:
        if i != r.id:
            maybe_send_append(r, i, send_if_empty=True)


def maybe_send_append(r: Raft, to: int, *, send_if_empty: bool) -> bool:
    """Send `to` what it lacks (or a snapshot); True if a message was sent."""
    pr = r.trk.progress[to]
    if pr.is_paused():
        return False
    prev = pr.next - 1
    try:
        prev_term = r.log.term(prev)
        # With a full window send an empty MsgApp: if the window's messages were all
        # lost, its rejection is what gets replication going again.
        full = pr.state is PS.REPLICATE and pr.inflights.full()
        ents = [] if full else r.log.entries(pr.next, r.max_msg_size)
    except CompactedError:
        return _maybe_send_snapshot(r, to, pr)
    if not ents and not send_if_empty:
        return False
    commit = r.log.committed
    r.send(Message(MT.APP, r.id, to, r.term, prev_term, prev, tuple(ents), commit))
    pr.sent_entries(len(ents), ents[-1].index if ents else 0)
    return True


def _maybe_send_snapshot(r: Raft, to: int, pr: Progress) -> bool:
    if not pr.recent_active:
        return False  # do not ship a whole snapshot to a node that may be down
    try:
        snap = r.log.snapshot()
    except SnapshotTemporarilyUnavailable:
        return False
    if snap.is_empty:
        raise InvariantViolation(f"raft {r.id}: log compacted but storage has no snapshot")
    r.send(Message(MT.SNAP, r.id, to, term=r.term, snapshot=snap))
    pr.become_snapshot(snap.index)
    return True


def _handle_append_response(r: Raft, m: Message, pr: Progress) -> None:
    pr.recent_active = True
    if m.reject:
        next_probe = m.reject_hint
        if m.log_term > 0:
            next_probe, _ = r.log.find_conflict_by_term(m.reject_hint, m.log_term)
        if pr.maybe_decr_to(m.index, next_probe):
            if pr.state is PS.REPLICATE:
                pr.become_probe()
            maybe_send_append(r, m.from_, send_if_empty=True)
        return
    if m.index > r.log.last_index():
        raise InvariantViolation(f"raft {r.id}: {m.from_} acknowledged {m.index} we lack")
    was_paused = pr.is_paused()
    if not (pr.maybe_update(m.index) or (pr.match == m.index and pr.state is PS.PROBE)):
        return
    if pr.state is PS.PROBE:
        pr.become_replicate()
    elif pr.state is PS.SNAPSHOT and pr.match + 1 >= r.log.first_index():
        pr.become_probe()  # it can catch up from the log now
        pr.become_replicate()
    elif pr.state is PS.REPLICATE:
        pr.inflights.free_le(m.index)
        pr.paused = pr.inflights.full()
    if _maybe_commit(r):
        bcast_append(r)
    elif was_paused:
        # It missed what happened while it was paused; this also carries the commit index.
        maybe_send_append(r, m.from_, send_if_empty=True)
    while maybe_send_append(r, m.from_, send_if_empty=False):
        pass
    if m.from_ == r.lead_transferee and pr.match == r.log.last_index():
        _send_timeout_now(r, m.from_)


def _snapshot_timeout_beats(r: Raft) -> int:
    return 2 * max(1, r.election_timeout // r.heartbeat_timeout)


def _handle_heartbeat_response(r: Raft, m: Message, pr: Progress) -> None:
    pr.recent_active = True
    pr.paused = False
    if pr.state is PS.SNAPSHOT:
        # Neither delivered nor reported for two election timeouts: assume it was lost.
        pr.snapshot_beats += 1
        if pr.snapshot_beats >= _snapshot_timeout_beats(r):
            pr.become_probe()
    if pr.match < r.log.last_index() or pr.state is PS.PROBE:
        maybe_send_append(r, m.from_, send_if_empty=True)
    if not m.context:
        return
    acks = r.read_only.recv_ack(m.from_, m.context)
    if acks is None or vote_result(r.trk.voters, dict.fromkeys(acks, True)) is not VoteResult.WON:
        return
    for status in r.read_only.advance(m.context):
        _respond_read_index(r, status.request, status.index)


def bcast_heartbeat(r: Raft, ctx: bytes) -> None:
    committed = r.log.committed
    lowest = committed
    for i, pr in r.trk.progress.items():
        if i != r.id:
            # Never tell a follower to commit past what it is known to have.
            commit = min(pr.match, committed)
            lowest = min(lowest, commit)
            r.send(Message(MT.HEARTBEAT, r.id, i, term=r.term, commit=commit, context=ctx))
    r.beat_commit = lowest


def is_idle(r: Raft) -> bool:
    """Nothing for the followers but the leader's liveness: every follower replicates
    with the whole log acknowledged and nothing in flight, the last heartbeat round told
    each of them the current commit index, and no ReadIndex or leadership transfer waits
    on heartbeat answers. Then heartbeats only hold off elections and feed check-quorum,
    and `Config.idle_heartbeat_tick` may space them out. A proposal, a commit, a read or
    a lagging follower ends it at once (the next tick heartbeats as usual)."""
    if r.lead_transferee != NONE or r.pending_read_index or r.read_only.last_pending_context():
        return False
    committed, last = r.log.committed, r.log.last_index()
    if r.beat_commit != committed:
        return False
    for i, pr in r.trk.progress.items():
        if i == r.id:
            continue
        if pr.state is not PS.REPLICATE or pr.match != last or pr.paused or len(pr.inflights):
            return False
    return True


# --- reads and transfers ----------------------------------------------------------------


def _read_index(r: Raft, m: Message) -> None:
    if not r.trk.is_singleton() and r.log.term_or_zero(r.log.committed) != r.term:
        # Until an entry of our term commits we do not know the true commit index.
        r.pending_read_index.append(m)
        return
    _send_read_index(r, m)


def _send_read_index(r: Raft, m: Message) -> None:
    if r.trk.is_singleton():
        _respond_read_index(r, m, r.log.committed)
        return
    r.read_only.add_request(r.log.committed, m)
    r.read_only.recv_ack(r.id, m.context)
    bcast_heartbeat(r, m.context)


def _respond_read_index(r: Raft, req: Message, index: int) -> None:
    if req.from_ in (NONE, r.id):
        r.read_states.append(ReadState(index=index, context=req.context))
    else:
        r.send(
            Message(MT.READ_INDEX_RESP, r.id, req.from_, r.term, index=index, context=req.context)
        )


def _transfer(r: Raft, transferee: int, pr: Progress) -> None:
    if pr.is_learner or r.state is not StateRole.LEADER:
        return
    if r.lead_transferee == transferee or transferee == r.id:
        return
    r.election_elapsed = 0  # the transfer must finish within an election timeout
    r.lead_transferee = transferee
    if pr.match == r.log.last_index():
        _send_timeout_now(r, transferee)
    else:
        maybe_send_append(r, transferee, send_if_empty=True)


def _send_timeout_now(r: Raft, to: int) -> None:
    r.send(Message(MT.TIMEOUT_NOW, r.id, to, term=r.term))
