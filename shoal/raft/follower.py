"""Step functions of followers and (pre-)candidates, and the follower's handling of the
leader's AppendEntries, heartbeats and snapshots."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from shoal.raft import leader
from shoal.raft.errors import ProposalDropped
from shoal.raft.messages import NONE, Message, MessageType
from shoal.raft.quorum import VoteResult
from shoal.raft.readonly import ReadState
from shoal.raft.roles import CampaignType, StateRole

if TYPE_CHECKING:
    from shoal.raft.core import Raft

__all__ = ["step_candidate", "step_follower"]

MT = MessageType


def step_follower(r: Raft, m: Message) -> None:
    t = m.type
    if t is MT.APP or t is MT.HEARTBEAT or t is MT.SNAP:
        r.election_elapsed = 0
        r.lead = m.from_
        _handle_leader_message(r, m)
    elif t is MT.PROP or t is MT.READ_INDEX or t is MT.TRANSFER_LEADER:
        if r.lead == NONE:
            raise ProposalDropped(f"raft {r.id}: no leader at term {r.term}; dropping {t.name}")
        r.send(msgspec.structs.replace(m, to=r.lead))
    elif t is MT.TIMEOUT_NOW:
        r.hup(CampaignType.TRANSFER)
    elif t is MT.READ_INDEX_RESP:
        r.read_states.append(ReadState(index=m.index, context=m.context))


def step_candidate(r: Raft, m: Message) -> None:
    """Both candidates and pre-candidates; they count their own kind of votes only."""
    t = m.type
    my_resp = MT.PRE_VOTE_RESP if r.state is StateRole.PRE_CANDIDATE else MT.VOTE_RESP
    if t is MT.APP or t is MT.HEARTBEAT or t is MT.SNAP:
        # Only a leader of our term (or a later one, handled in step) sends these.
        r.become_follower(m.term, m.from_)
        _handle_leader_message(r, m)
    elif t is MT.PROP or t is MT.READ_INDEX or t is MT.TRANSFER_LEADER:
        raise ProposalDropped(f"raft {r.id}: no leader at term {r.term}; dropping {t.name}")
    elif t is my_resp:
        result = r.poll(m.from_, not m.reject)
        if result is VoteResult.WON:
            if r.state is StateRole.PRE_CANDIDATE:
                r.campaign(CampaignType.ELECTION)
            else:
                r.become_leader()
                leader.bcast_append(r)
        elif result is VoteResult.LOST:
            r.become_follower(r.term, NONE)


def _handle_leader_message(r: Raft, m: Message) -> None:
    if m.type is MT.APP:
        handle_append_entries(r, m)
    elif m.type is MT.HEARTBEAT:
        r.log.commit_to(m.commit)
        r.send(Message(MT.HEARTBEAT_RESP, r.id, m.from_, term=r.term, context=m.context))
    else:
        handle_snapshot(r, m)


def handle_append_entries(r: Raft, m: Message) -> None:
    log = r.log
    if m.index < log.committed:
        r.send(Message(MT.APP_RESP, r.id, m.from_, term=r.term, index=log.committed))
        return
    last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
    if last_new is not None:
        r.send(Message(MT.APP_RESP, r.id, m.from_, term=r.term, index=last_new))
        return
    # Tell the leader where our log could match, so it can skip a whole term at a time.
    hint_index = min(m.index, log.last_index())
    hint_index, hint_term = log.find_conflict_by_term(hint_index, m.log_term)
    r.send(
        Message(
            MT.APP_RESP,
            r.id,
            m.from_,
            term=r.term,
            index=m.index,
            reject=True,
            reject_hint=hint_index,
            log_term=hint_term,
        )
    )


def handle_snapshot(r: Raft, m: Message) -> None:
    if m.snapshot is None:
        return
    index = r.log.last_index() if r.restore(m.snapshot) else r.log.committed
    r.send(Message(MT.APP_RESP, r.id, m.from_, term=r.term, index=index))
