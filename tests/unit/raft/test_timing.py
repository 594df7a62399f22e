"""RawNode.set_timing: election and heartbeat timeouts changed on a running node."""

from __future__ import annotations

import pytest

from shoal.raft import ConfigError, MessageType
from tests.unit.raft.harness import Net


def _ticks_until_campaign(net: Net, node_id: int, limit: int = 1000) -> int:
    """Ticks of `node_id` (nothing delivered) until it sends its first pre-vote."""
    for n in range(1, limit + 1):
        net.tick(node_id)
        if any(m.type is MessageType.PRE_VOTE for m in net.process_ready(node_id)):
            return n
    raise AssertionError("no campaign")


def test_a_shorter_election_timeout_takes_effect_at_once() -> None:
    net = Net(election_tick=10)
    net.node(1).set_timing(election_tick=3, heartbeat_tick=1)
    assert 3 <= _ticks_until_campaign(net, 1) < 6  # randomised in [3, 6), not [10, 20)


def test_a_longer_election_timeout_delays_the_campaign() -> None:
    net = Net(election_tick=3)
    net.node(1).set_timing(election_tick=40, heartbeat_tick=2)
    assert 40 <= _ticks_until_campaign(net, 1) < 80


def test_elapsed_time_still_counts() -> None:
    net = Net(election_tick=50)
    net.tick(1, 49)  # not yet: the randomised timeout is at least 50
    assert not any(m.type is MessageType.PRE_VOTE for m in net.process_ready(1))
    net.node(1).set_timing(election_tick=5, heartbeat_tick=1)
    assert _ticks_until_campaign(net, 1) == 1  # 49 ticks without a leader are past 5-10


def test_leader_heartbeats_follow_the_new_heartbeat_tick() -> None:
    net = Net()
    net.campaign(1)
    net.node(1).set_timing(election_tick=12, heartbeat_tick=4)
    beats = []
    for n in range(1, 13):
        net.tick(1)
        if any(m.type is MessageType.HEARTBEAT for m in net.process_ready(1)):
            beats.append(n)
    assert beats == [4, 8, 12]
    assert net.leaders() == [1]


def test_cluster_with_new_timings_elects_again() -> None:
    net = Net((1, 2, 3), seed=3)
    net.campaign(1)
    for i in (1, 2, 3):
        net.node(i).set_timing(election_tick=4, heartbeat_tick=1)
    del net.boxes[1]  # the leader is gone
    for _ in range(20):
        net.tick_all(1)
        if net.leaders():
            break
    assert len(net.leaders()) == 1


@pytest.mark.parametrize(("election", "heartbeat"), [(1, 1), (3, 0), (2, 3), (0, 0)])
def test_bad_timing_is_refused_and_changes_nothing(election: int, heartbeat: int) -> None:
    net = Net(election_tick=10)
    with pytest.raises(ConfigError):
        net.node(1).set_timing(election_tick=election, heartbeat_tick=heartbeat)
    assert 10 <= _ticks_until_campaign(net, 1) < 20
