"""The RawNode contract: Ready/advance, errors at the API, introspection."""

from __future__ import annotations

import random

import pytest

from shoal.raft import (
    Config,
    ConfigError,
    Entry,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    ProposalDropped,
    RaftError,
    RawNode,
    StateRole,
)
from tests.unit.raft.harness import Net


def node(node_id: int = 1, voters: tuple[int, ...] = (1, 2, 3)) -> RawNode:
    return RawNode(Config(id=node_id, rng=random.Random(0)), MemoryStorage.bootstrap(voters))


def test_nothing_ready_at_rest() -> None:
    assert not node().has_ready()


def test_ready_must_be_advanced_before_the_next_one() -> None:
    n = node()
    n.campaign()
    assert n.has_ready()
    rd = n.ready()
    assert not n.has_ready()  # nothing new is handed out before advance
    with pytest.raises(RaftError, match="before advance"):
        n.ready()
    with pytest.raises(RaftError, match="not the outstanding"):
        n.advance(node().ready())
    n.advance(rd)
    assert not n.has_ready()


def test_campaign_ready_contents() -> None:
    n = node()
    n.campaign()
    rd = n.ready()
    assert rd.soft_state is not None and rd.soft_state.role is StateRole.PRE_CANDIDATE
    assert rd.hard_state is None  # a pre-campaign changes nothing durable
    assert not rd.must_sync
    assert [(m.type, m.to, m.term) for m in rd.messages] == [
        (MessageType.PRE_VOTE, 2, 2),
        (MessageType.PRE_VOTE, 3, 2),
    ]


def test_must_sync_only_for_entries_term_or_vote() -> None:
    net = Net()
    net.elect(1)
    n2, s2 = net.node(2), net.boxes[2].storage
    net.node(1).propose(b"x")
    net.deliver_matching(lambda m: m.to == 2)
    rd = n2.ready()
    assert rd.entries and rd.must_sync  # new entries: fsync before acknowledging
    s2.append(rd.entries)
    n2.advance(rd)
    net.queue.extend(rd.messages)
    net.deliver_matching(lambda m: m.to == 1)  # the leader commits ...
    net.deliver_matching(lambda m: m.to == 2 and m.type is MessageType.APP)  # ... and says so
    rd = n2.ready()
    assert rd.hard_state == HardState(term=2, vote=1, commit=3)
    assert [e.data for e in rd.committed_entries] == [b"x"]
    assert not rd.entries and not rd.must_sync  # a lost commit index is learnt again
    n2.advance(rd)


def test_committed_entries_are_handed_out_once() -> None:
    net = Net((1,))
    net.elect(1)
    net.node(1).propose(b"once")
    net.stabilize()
    assert net.data_applied(1) == [b"once"]
    net.stabilize()
    assert net.data_applied(1) == [b"once"]
    assert net.node(1).applied == 3


def test_proposals_without_leader_are_dropped() -> None:
    with pytest.raises(ProposalDropped, match="no leader"):
        node().propose(b"x")


def test_forwarded_proposal_that_cannot_be_taken_is_dropped_silently() -> None:
    n = node()
    n.step(Message(MessageType.PROP, from_=2, to=1, entries=()))  # no leader: dropped


def test_own_request_bounced_back_by_a_stale_leader_is_dropped_silently() -> None:
    """Found by the simulation: node 5 forwarded a read to node 2, which had meanwhile
    come to believe 5 leads and forwarded it back; 5, leaderless by then, must not
    raise from step()."""
    n = node()
    n.step(Message(MessageType.READ_INDEX, from_=1, to=1, context=b"mine"))
    n.step(Message(MessageType.PROP, from_=1, to=1, entries=(Entry(0, 0, data=b"p"),)))


def test_local_messages_cannot_come_from_the_network() -> None:
    with pytest.raises(ConfigError):
        node().step(Message(MessageType.HUP, from_=2, to=1))


def test_messages_for_another_node_are_ignored() -> None:
    n = node()
    n.step(Message(MessageType.APP, from_=2, to=3, term=7))
    assert n.term == 1


def test_responses_from_strangers_are_ignored() -> None:
    n = node()
    n.step(Message(MessageType.APP_RESP, from_=9, to=1, term=5))
    assert n.term == 1  # not even its term is taken


def test_restart_hands_out_committed_entries_again() -> None:
    net = Net((1,))
    net.elect(1)
    net.propose(1, b"a")
    net.propose(1, b"b")
    box = net.restart(1)
    assert box.node.applied == 1  # the bootstrap snapshot
    net.stabilize()
    assert net.data_applied(1) == [b"a", b"b"]


def test_restart_with_applied_index_skips_applied_entries() -> None:
    net = Net((1,))
    net.elect(1)
    net.propose(1, b"a")
    net.propose(1, b"b")
    storage = net.boxes[1].storage
    n = RawNode(Config(id=1, rng=random.Random(1), applied=3), storage)
    rd = n.ready()
    assert [e.data for e in rd.committed_entries] == [b"b"]


def test_restart_rejects_a_commit_beyond_the_log() -> None:
    s = MemoryStorage.bootstrap((1, 2, 3))
    s.set_hard_state(HardState(term=2, commit=5))
    with pytest.raises(RaftError, match="past the last index"):
        RawNode(Config(id=1, rng=random.Random(0)), s)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"id": 0},
        {"heartbeat_tick": 0},
        {"election_tick": 1, "heartbeat_tick": 1},
        {"max_inflight": 0},
        {"max_size_per_msg": 0},
        {"applied": -1},
    ],
)
def test_invalid_config(kwargs: dict[str, int]) -> None:
    args: dict[str, int] = {"id": 1}
    args.update(kwargs)
    with pytest.raises(ConfigError):
        RawNode(Config(rng=random.Random(0), **args), MemoryStorage.bootstrap((1,)))  # type: ignore[arg-type]


def test_status_shows_progress_on_the_leader_only() -> None:
    net = Net()
    net.elect(1)
    net.propose(1, b"x")
    st = net.node(1).status()
    assert st.soft_state.role is StateRole.LEADER
    assert st.hard_state == HardState(term=2, vote=1, commit=3)
    assert {i: p.match for i, p in st.progress.items()} == {1: 3, 2: 3, 3: 3}
    assert net.node(2).status().progress == {}
    assert net.node(2).lead == 1 and net.node(2).committed == 3
