"""Membership: learners, promotion, removal, one change at a time, leader transfer."""

from __future__ import annotations

import pytest

from shoal.raft import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    MessageType,
    ProposalDropped,
    StateRole,
    encode,
)
from tests.unit.raft.harness import Net

ADD, LEARNER, REMOVE = (
    ConfChangeType.ADD_NODE,
    ConfChangeType.ADD_LEARNER,
    ConfChangeType.REMOVE_NODE,
)


def test_a_joining_node_starts_as_a_learner_and_catches_up() -> None:
    net = Net()
    net.elect(1)
    net.propose(1, b"before")
    net.conf_change(1, LEARNER, 4)
    net.add_node(4)  # empty storage: it learns everything, config included, from the leader
    net.tick_all(2)
    assert net.node(1).conf_state == ConfState(voters=(1, 2, 3), learners=(4,))
    assert net.node(4).conf_state == ConfState(voters=(1, 2, 3), learners=(4,))
    assert net.data_applied(4) == [b"before"]
    assert net.boxes[4].storage.snapshot().index == 1  # it got the bootstrap snapshot first


def test_learners_neither_vote_nor_count_for_commit() -> None:
    net = Net(voters=(1, 2, 3), learners=(4,))
    net.elect(1)
    assert not any(t.startswith("1->4 VOTE") or t.startswith("1->4 PRE_VOTE") for t in net.trace)
    net.isolate(2)
    net.cut(1, 3)
    net.propose(1, b"x")
    assert net.boxes[4].storage.last_index() == net.node(1).last_index  # 4 has it ...
    assert net.node(1).committed < net.node(1).last_index  # ... but only a voter counts
    # A learner never campaigns, however long it waits.
    net.tick(4, 100)
    net.stabilize()
    assert net.node(4).role is StateRole.FOLLOWER


def test_learner_promotion() -> None:
    net = Net(voters=(1, 2, 3), learners=(4,))
    net.elect(1)
    progress = net.node(1).status().progress
    assert progress[4].is_learner and progress[4].match == net.node(1).last_index  # caught up
    net.conf_change(1, ADD, 4)
    assert net.node(4).conf_state == ConfState(voters=(1, 2, 3, 4))
    # Now a quorum is 3 of 4: with 2 and 3 away, 1 and 4 cannot commit.
    net.isolate(2)
    net.isolate(3)
    net.propose(1, b"y")
    assert b"y" not in net.data_applied(1)
    net.recover()
    net.tick_all(1)
    assert b"y" in net.data_applied(4)


def test_removed_follower_is_forgotten() -> None:
    net = Net()
    net.elect(1)
    net.conf_change(1, REMOVE, 3)
    assert net.node(1).conf_state == ConfState(voters=(1, 2))
    assert 3 not in net.node(1).status().progress
    net.trace.clear()
    net.tick_all(3)
    assert not any(t.startswith("1->3") for t in net.trace)  # no more heartbeats to it


def test_removed_node_does_not_disrupt_the_cluster() -> None:
    """A node removed while partitioned never learns it; back, it keeps campaigning, and
    pre-vote plus the check-quorum lease keep it from deposing the leader."""
    net = Net()
    net.elect(1)
    net.isolate(3)
    net.conf_change(1, REMOVE, 3)
    assert net.node(3).conf_state.voters == (1, 2, 3)
    net.recover()
    net.tick_all(100)
    assert net.leaders() == [1]
    assert net.node(1).term == 2 and net.node(2).term == 2


def test_removing_the_leader_makes_it_step_down() -> None:
    net = Net()
    net.elect(1)
    net.conf_change(1, REMOVE, 1)
    assert net.node(1).role is StateRole.FOLLOWER
    net.tick_all(30)
    assert len(net.leaders()) == 1 and net.leaders()[0] in (2, 3)
    assert net.node(net.leaders()[0]).conf_state == ConfState(voters=(2, 3))


def test_only_one_conf_change_at_a_time() -> None:
    net = Net()
    net.elect(1)
    net.node(1).propose_conf_change(ConfChange(LEARNER, 4))
    with pytest.raises(ProposalDropped, match="not applied yet"):
        net.node(1).propose_conf_change(ConfChange(LEARNER, 5))
    net.stabilize()  # the first one is applied ...
    net.conf_change(1, LEARNER, 5)  # ... so the next is accepted
    assert net.node(1).conf_state.learners == (4, 5)


def test_new_leader_accepts_no_conf_change_before_its_term_commits() -> None:
    net = Net()
    net.node(1).campaign()
    while net.node(1).role is not StateRole.LEADER:
        net.deliver_matching(lambda m: m.type is not MessageType.APP)
    with pytest.raises(ProposalDropped):
        net.node(1).propose_conf_change(ConfChange(LEARNER, 4))
    net.stabilize()
    net.conf_change(1, LEARNER, 4)
    assert net.node(1).conf_state.learners == (4,)


@pytest.mark.parametrize(
    ("cc", "reason"),
    [
        (ConfChange(ADD, 2), "already a voter"),
        (ConfChange(LEARNER, 2), "already a member"),
        (ConfChange(REMOVE, 9), "not a member"),
    ],
)
def test_pointless_conf_changes_are_refused(cc: ConfChange, reason: str) -> None:
    net = Net()
    net.elect(1)
    with pytest.raises(ProposalDropped, match=reason):
        net.node(1).propose_conf_change(cc)


def test_the_last_voter_cannot_be_removed() -> None:
    net = Net((1,))
    net.elect(1)
    with pytest.raises(ProposalDropped, match="last voter"):
        net.node(1).propose_conf_change(ConfChange(REMOVE, 1))


def test_no_campaign_with_a_committed_but_unapplied_conf_change() -> None:
    """Until it applies the change, a node's view of the voters may be stale."""
    s = MemoryStorage.bootstrap((1, 2, 3))
    s.append([Entry(1, 2, EntryType.CONF_CHANGE, encode(ConfChange(REMOVE, 3)))])
    s.set_hard_state(HardState(term=1, commit=2))
    net = Net(storages={1: s})
    node = net.node(1)
    node.campaign()
    assert node.role is StateRole.FOLLOWER and node.term == 1
    net.stabilize()  # the application applies entry 2
    assert node.conf_state == ConfState(voters=(1, 2))
    node.campaign()
    assert node.status().soft_state.role is StateRole.PRE_CANDIDATE


# --- leadership transfer ----------------------------------------------------------------


def test_leader_transfer() -> None:
    net = Net()
    net.elect(1)
    net.trace.clear()
    net.node(1).transfer_leadership(2)
    net.stabilize()
    assert net.leaders() == [2]
    assert net.node(2).term == 3
    assert net.trace[:3] == [
        "1->2 TIMEOUT_NOW term=2",
        # The transferee skips pre-vote and its request overrides the voters' lease.
        "2->1 VOTE term=3 log=2/2 ctx=transfer",
        "2->3 VOTE term=3 log=2/2 ctx=transfer",
    ]


def test_transfer_to_a_lagging_follower_catches_it_up_first() -> None:
    net = Net()
    net.elect(1)
    net.isolate(3)
    net.propose(1, b"x")
    net.recover()
    net.node(1).transfer_leadership(3)
    with pytest.raises(ProposalDropped, match="transfer"):
        net.node(1).propose(b"during")  # proposals wait for the new leader
    net.stabilize()
    assert net.leaders() == [3]
    assert net.data_applied(3) == [b"x"]


def test_transfer_requested_on_a_follower_is_forwarded() -> None:
    net = Net()
    net.elect(1)
    net.node(3).transfer_leadership(3)
    net.stabilize()
    assert net.leaders() == [3]


def test_transfer_to_a_learner_is_ignored() -> None:
    net = Net(voters=(1, 2, 3), learners=(4,))
    net.elect(1)
    net.node(1).transfer_leadership(4)
    net.stabilize()
    assert net.leaders() == [1]


def test_transfer_that_cannot_finish_is_abandoned() -> None:
    net = Net()
    net.elect(1)
    net.cut(1, 2)
    net.node(1).transfer_leadership(2)
    net.stabilize()
    net.node(1).tick()  # still transferring: proposals refused
    with pytest.raises(ProposalDropped):
        net.node(1).propose(b"x")
    for _ in range(10):
        net.tick(1)
        net.tick(3)
        net.stabilize()
    assert net.leaders() == [1]
    net.propose(1, b"x")  # transfer timed out after an election timeout
    assert net.data_applied(3) == [b"x"]


def test_transfer_then_remove_the_old_leader() -> None:
    """How a leaving manager leaves: hand over leadership, then be removed."""
    net = Net()
    net.elect(1)
    net.node(1).transfer_leadership(2)
    net.stabilize()
    net.conf_change(2, REMOVE, 1)
    assert net.node(2).conf_state == ConfState(voters=(2, 3))
    net.propose(2, b"z")
    assert net.data_applied(3) == [b"z"]
