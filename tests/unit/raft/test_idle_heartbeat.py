"""An idle leader heartbeats every `idle_heartbeat_tick` ticks instead of every tick
(`Config.idle_heartbeat_tick`, `leader.is_idle`); anything for the followers to learn
brings the normal rate back at once."""

from __future__ import annotations

import pytest

from shoal.manager.raft.config import RaftNodeConfig, idle_heartbeat_tick
from shoal.raft import ConfigError, MessageType
from tests.unit.raft.harness import Net

MT = MessageType


def _idle_net(idle: int = 3) -> Net:
    net = Net((1, 2, 3), seed=7)
    for i in (1, 2, 3):
        net.node(i).set_timing(10, 1, idle)
    net.elect(1)
    return net


def _beats(net: Net, ticks: int) -> list[int]:
    """Tick the leader `ticks` times (delivering everything after each): the ticks (1-based)
    after which it sent heartbeats."""
    beats = []
    for n in range(1, ticks + 1):
        net.tick(1)
        net.collect()
        if any(m.type is MT.HEARTBEAT for m in net.queue):
            beats.append(n)
        net.stabilize()
    return beats


def test_an_idle_leader_heartbeats_every_idle_tick() -> None:
    net = _idle_net()
    # the first round tells everyone the commit of the election's entry, then every 3rd
    assert _beats(net, 3) == [1]
    assert _beats(net, 12) == [1, 4, 7, 10]
    assert net.leaders() == [1]


def test_without_the_setting_the_leader_heartbeats_every_tick() -> None:
    net = _idle_net(idle=0)
    assert _beats(net, 6) == [1, 2, 3, 4, 5, 6]


def test_a_new_commit_brings_one_heartbeat_at_once() -> None:
    net = _idle_net()
    _beats(net, 4)
    net.propose(1, b"x")  # committed and sent to all with the appends
    assert _beats(net, 7) == [1, 4, 7]  # one round that carries the commit, then idle again


def test_a_lagging_follower_gets_heartbeats_every_tick() -> None:
    net = _idle_net()
    _beats(net, 3)
    net.isolate(3)
    net.propose(1, b"x")  # 3 misses it: its match is behind the leader's log
    assert _beats(net, 5) == [1, 2, 3, 4, 5]
    net.recover()
    net.tick(1)
    net.stabilize()  # the heartbeat answer gets 3 its entries
    _beats(net, 1)  # and the round after tells it the commit
    assert _beats(net, 6) == [3, 6]


def test_a_pending_read_keeps_the_normal_rate() -> None:
    net = _idle_net()
    _beats(net, 3)
    net.drop_types.add(MT.HEARTBEAT_RESP)  # the read cannot be confirmed
    net.node(1).read_index(b"r1")
    assert _beats(net, 4) == [1, 2, 3, 4]


def test_a_long_idle_run_keeps_its_leader_and_a_crash_still_elects() -> None:
    net = _idle_net()
    term = net.terms()[1]
    net.tick_all(500)
    assert net.leaders() == [1] and net.terms() == {1: term, 2: term, 3: term}
    del net.boxes[1]
    for _ in range(40):  # within two election timeouts
        net.tick_all(1)
        if net.leaders():
            break
    assert len(net.leaders()) == 1 and net.leaders()[0] != 1


@pytest.mark.parametrize("idle", [-1, 6, 11])
def test_an_idle_interval_over_half_the_election_timeout_is_refused(idle: int) -> None:
    net = Net(election_tick=10)
    with pytest.raises(ConfigError):
        net.node(1).set_timing(10, 1, idle)


@pytest.mark.parametrize(
    ("election", "heartbeat", "idle"),
    [(10, 1, 3), (3, 1, 0), (10, 3, 0), (15, 2, 5), (12, 4, 0), (20, 1, 6)],
)
def test_the_driver_derives_a_third_of_the_election_timeout(
    election: int, heartbeat: int, idle: int
) -> None:
    assert idle_heartbeat_tick(election, heartbeat) == idle
    cfg = RaftNodeConfig(election_tick=election, heartbeat_tick=heartbeat)
    assert cfg.idle_heartbeat_tick == idle


def test_ticks_until_due_names_the_first_tick_that_acts() -> None:
    """`ticks_until_due`: the ticks before the one it names only count (a driver sleeps
    through them); the named one is where an idle leader beats, a follower campaigns."""
    net = _idle_net()
    _beats(net, 3)
    lead, follower = net.node(1), net.node(2)
    due = lead.ticks_until_due()
    assert 1 <= due <= 3
    for _ in range(due - 1):
        net.tick(1)
        assert not lead.has_ready()
    assert lead.ticks_until_due() == 1
    net.tick(1)
    net.collect()
    assert any(m.type is MT.HEARTBEAT for m in net.queue)  # the due tick beat
    net.stabilize()
    net.propose(1, b"x")  # not idle until the commit is told: due at once
    assert lead.ticks_until_due() == 1
    net.isolate(1)
    due = follower.ticks_until_due()
    assert due > 1
    for _ in range(due - 1):
        net.tick(2)
        assert not follower.has_ready()
    net.tick(2)
    assert follower.has_ready()  # it campaigns (pre-vote) at the named tick
