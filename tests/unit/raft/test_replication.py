"""Log replication: repair of divergent logs, the figure-8 commit rule, flow control,
snapshots for followers that fell behind compaction."""

from __future__ import annotations

import pytest

from shoal.raft import Entry, HardState, MemoryStorage, MessageType, ProgressState
from tests.unit.raft.harness import Net, log_of

# Figure 7 of the Raft paper, as the terms of entries 2.. (entry 1 is the bootstrap).
LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FOLLOWERS = {
    "missing one": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "missing many": [1, 1, 1, 4],
    "one extra": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "extra of a later term": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "extra of an older term": [1, 1, 1, 4, 4, 4, 4],
    "divergent from term 2": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


def storage_with(terms: list[int], term: int = 7) -> MemoryStorage:
    s = MemoryStorage.bootstrap((1, 2, 3))
    s.append([Entry(t, i + 2) for i, t in enumerate(terms)])
    s.set_hard_state(HardState(term=term, commit=1))
    return s


@pytest.mark.parametrize("follower", FOLLOWERS.values(), ids=FOLLOWERS.keys())
def test_leader_repairs_a_divergent_follower(follower: list[int]) -> None:
    net = Net(
        storages={1: storage_with(LEADER), 2: storage_with(follower), 3: storage_with(LEADER)}
    )
    net.elect(1)
    net.stabilize()
    expected = log_of(net.boxes[1].storage)
    assert expected[-1] == (8, 12)  # the new leader's empty entry
    assert log_of(net.boxes[2].storage) == expected
    assert net.node(2).committed == 12


def test_rejection_hint_skips_a_whole_term() -> None:
    """The follower names where its log could match; the leader does not probe one by one."""
    net = Net(
        storages={
            1: storage_with(LEADER),
            2: storage_with(FOLLOWERS["divergent from term 2"]),
            3: storage_with(LEADER),
        }
    )
    net.elect(1)
    net.stabilize()
    rejections = [t for t in net.trace if t.startswith("2->1 APP_RESP") and "rejected" in t]
    assert len(rejections) <= 2, rejections


def test_commit_counts_only_entries_of_the_current_term() -> None:
    """Figure 8: an entry of an older term on a majority is not committed by counting; it
    commits only together with an entry of the leader's own term."""
    s1 = storage_with([2], term=2)  # node 1 led term 2 and appended entry 2, then fell
    net = Net(storages={1: s1}, max_size_per_msg=1)  # one entry per MsgApp
    net.cut(1, 3)
    net.node(1).campaign()
    while (2, 2) not in log_of(net.boxes[2].storage):
        net.deliver_matching(lambda m: True)
    net.deliver_matching(lambda m: m.type is MessageType.APP_RESP)  # 2 acknowledges entry 2
    leader = net.node(1)
    assert leader.term == 3
    assert leader.status().progress[2].match == 2  # entry 2 is on a majority {1, 2} ...
    assert leader.committed == 1  # ... but it is of term 2: not committed by counting
    net.stabilize()
    assert leader.status().progress[2].match == 3
    assert leader.committed == 3  # the term-3 entry committed, and entry 2 with it
    assert [e.index for e in net.boxes[1].applied] == [2, 3]


def test_pipelining_respects_the_inflight_window() -> None:
    net = Net(max_inflight=2)
    net.elect(1)
    net.cut(1, 2)
    for i in range(5):
        net.node(1).propose(b"p%d" % i)
        net.collect()
    apps = [m for m in net.queue if m.type is MessageType.APP and m.to == 3]
    assert len(apps) == 2  # the window is full: further entries wait for acks
    assert net.node(1).status().progress[3].state is ProgressState.REPLICATE
    net.stabilize()
    net.tick_all(2)
    assert net.data_applied(3) == [b"p%d" % i for i in range(5)]


def test_batching_respects_max_size_per_msg() -> None:
    net = Net(max_size_per_msg=40)  # ~2 entries of 4 bytes (each counts 16 + data)
    net.elect(1)
    net.isolate(3)
    for i in range(6):
        net.propose(1, b"p%03d" % i)
    net.recover()
    net.tick_all(3)
    sizes = [t.count("/") - 1 for t in net.trace if t.startswith("1->3 APP") and "ents=" in t]
    assert sizes and max(sizes) <= 2
    assert net.data_applied(3) == [b"p%03d" % i for i in range(6)]


def test_lost_appends_are_retransmitted_after_heartbeats() -> None:
    net = Net()
    net.elect(1)
    net.drop_types = {MessageType.APP}
    net.propose(1, b"lost")
    net.drop_types = set()
    assert net.data_applied(2) == []
    net.tick_all(3)
    assert net.data_applied(2) == [b"lost"]


def test_snapshot_to_a_follower_behind_compaction() -> None:
    net = Net()
    net.elect(1)
    net.isolate(3)
    for i in range(5):
        net.propose(1, b"p%d" % i)
    leader, s1 = net.node(1), net.boxes[1].storage
    s1.create_snapshot(leader.applied, leader.conf_state, b"state at %d" % leader.applied)
    s1.compact(leader.applied)
    net.recover()
    net.tick_all(3)
    assert any(t.startswith("1->3 SNAP") for t in net.trace)
    s3 = net.boxes[3].storage
    assert s3.snapshot().data == b"state at 7"
    assert s3.snapshot().index == 7
    assert net.node(3).committed == 7
    net.propose(1, b"after")
    assert net.data_applied(3) == [b"after"]  # the app restored 2..7 from the snapshot
    assert net.node(1).status().progress[3].state is ProgressState.REPLICATE


def test_a_kept_tail_spares_a_slow_follower_the_snapshot() -> None:
    net = Net()
    net.elect(1)
    net.isolate(3)
    for i in range(5):
        net.propose(1, b"p%d" % i)
    leader, s1 = net.node(1), net.boxes[1].storage
    s1.create_snapshot(leader.applied, leader.conf_state, b"state")
    s1.compact(leader.applied - 5)  # keep the last 5 entries for slow followers
    net.recover()
    net.tick_all(3)
    assert not any(" SNAP " in t for t in net.trace)
    assert net.data_applied(3) == [b"p%d" % i for i in range(5)]


def test_lost_snapshot_is_sent_again() -> None:
    net = Net()
    net.elect(1)
    net.isolate(3)
    for i in range(3):
        net.propose(1, b"p%d" % i)
    leader, s1 = net.node(1), net.boxes[1].storage
    s1.create_snapshot(leader.applied, leader.conf_state, b"state")
    s1.compact(leader.applied)
    net.recover()
    net.drop_types = {MessageType.SNAP}
    net.tick_all(2)
    assert net.node(1).status().progress[3].state is ProgressState.SNAPSHOT
    net.drop_types = set()
    net.tick_all(25)  # nobody reports the loss: the leader gives up waiting and resends
    assert net.boxes[3].storage.snapshot().index == leader.applied


def test_reported_snapshot_failure_probes_again() -> None:
    net = Net()
    net.elect(1)
    net.isolate(3)
    net.propose(1, b"p")
    leader, s1 = net.node(1), net.boxes[1].storage
    s1.create_snapshot(leader.applied, leader.conf_state, b"state")
    s1.compact(leader.applied)
    net.recover()
    net.drop_types = {MessageType.SNAP}
    net.tick_all(2)
    net.drop_types = set()
    leader.report_snapshot(3, ok=False)
    assert leader.status().progress[3].state is ProgressState.PROBE
    net.tick_all(2)
    assert net.boxes[3].storage.snapshot().index == leader.applied


def test_unreachable_follower_falls_back_to_probing() -> None:
    net = Net()
    net.elect(1)
    net.propose(1, b"x")
    assert net.node(1).status().progress[2].state is ProgressState.REPLICATE
    net.node(1).report_unreachable(2)
    assert net.node(1).status().progress[2].state is ProgressState.PROBE
    net.propose(1, b"y")
    net.tick_all(1)
    assert net.data_applied(2) == [b"x", b"y"]
