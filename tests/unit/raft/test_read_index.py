"""ReadIndex: a read point confirmed by a heartbeat round, served after applying it."""

from __future__ import annotations

import pytest

from shoal.raft import MessageType, ProposalDropped, ReadState, StateRole
from tests.unit.raft.harness import Net


def test_leader_confirms_leadership_before_answering() -> None:
    net = Net()
    net.elect(1)
    net.propose(1, b"x")
    net.trace.clear()
    net.node(1).read_index(b"req-1")
    net.collect()
    assert net.boxes[1].read_states == []  # nothing before a quorum answered
    net.stabilize()
    assert net.boxes[1].read_states == [ReadState(index=3, context=b"req-1")]
    assert net.trace[:2] == [
        "1->2 HEARTBEAT term=2 commit=3 ctx=req-1",
        "1->3 HEARTBEAT term=2 commit=3 ctx=req-1",
    ]


def test_follower_read_is_forwarded_to_the_leader() -> None:
    net = Net()
    net.elect(1)
    net.propose(1, b"x")
    net.node(3).read_index(b"req-2")
    net.stabilize()
    assert net.boxes[3].read_states == [ReadState(index=3, context=b"req-2")]
    assert "1->3 READ_INDEX_RESP term=2 ctx=req-2" in net.trace


def test_deposed_leader_cannot_serve_a_stale_read() -> None:
    net = Net(check_quorum=False)
    net.elect(1)
    net.isolate(1)
    net.tick_all(30)  # 2 or 3 takes over and commits a write 1 does not know of
    new = next(i for i in net.leaders() if i != 1)
    net.propose(new, b"newer")
    assert net.node(1).role is StateRole.LEADER  # still believes it leads
    net.node(1).read_index(b"stale?")
    net.stabilize()
    assert net.boxes[1].read_states == []  # no quorum confirms it: no read point


def test_read_waits_for_the_new_leader_to_commit_in_its_term() -> None:
    net = Net()
    net.node(1).campaign()
    while net.node(1).role is not StateRole.LEADER:
        net.deliver_matching(lambda m: m.type is not MessageType.APP)
    net.node(1).read_index(b"early")
    net.stabilize()
    # The read point is at least the leader's first entry of its term.
    assert net.boxes[1].read_states == [ReadState(index=2, context=b"early")]


def test_reads_without_a_leader_are_refused() -> None:
    net = Net()
    with pytest.raises(ProposalDropped, match="no leader"):
        net.node(2).read_index(b"r")


def test_single_node_answers_at_once() -> None:
    net = Net((1,))
    net.elect(1)
    net.node(1).read_index(b"solo")
    net.collect()
    assert net.boxes[1].read_states == [ReadState(index=2, context=b"solo")]


def test_several_pending_reads_are_released_in_order() -> None:
    net = Net()
    net.elect(1)
    net.node(1).read_index(b"a")
    net.node(2).read_index(b"b")
    net.node(1).read_index(b"c")
    net.stabilize()
    assert [rs.context for rs in net.boxes[1].read_states] == [b"a", b"c"]
    assert [rs.context for rs in net.boxes[2].read_states] == [b"b"]
