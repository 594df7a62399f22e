"""Elections: the exchange, randomised timeouts, pre-vote, check-quorum, restarts."""

from __future__ import annotations

from shoal.raft import Entry, HardState, MemoryStorage, StateRole
from tests.unit.raft.harness import Net


def test_campaign_exchange() -> None:
    net = Net()
    net.campaign(1)
    assert net.trace == [
        # Pre-vote for term 2 without leaving term 1 ...
        "1->2 PRE_VOTE term=2 log=1/1",
        "1->3 PRE_VOTE term=2 log=1/1",
        "2->1 PRE_VOTE_RESP term=2",
        "3->1 PRE_VOTE_RESP term=2",
        # ... then the real election; 3's late pre-vote answer was ignored.
        "1->2 VOTE term=2 log=1/1",
        "1->3 VOTE term=2 log=1/1",
        "2->1 VOTE_RESP term=2",
        "3->1 VOTE_RESP term=2",
        # The new leader's empty entry commits its term; an empty append spreads the commit.
        "1->2 APP term=2 log=1/1 ents=[2/2] commit=1",
        "1->3 APP term=2 log=1/1 ents=[2/2] commit=1",
        "2->1 APP_RESP term=2 index=2",
        "3->1 APP_RESP term=2 index=2",
        "1->2 APP term=2 log=2/2 commit=2",
        "1->3 APP term=2 log=2/2 commit=2",
        "2->1 APP_RESP term=2 index=2",
        "3->1 APP_RESP term=2 index=2",
    ]
    assert net.leaders() == [1]
    assert all(b.node.lead == 1 and b.node.committed == 2 for b in net.boxes.values())


def test_ticks_elect_exactly_one_leader() -> None:
    for seed in range(20):
        net = Net((1, 2, 3, 4, 5), seed=seed)
        for _ in range(100):
            net.tick_all(1)
            if net.leaders():
                break
        assert len(net.leaders()) == 1, seed
        lead = net.leaders()[0]
        net.tick_all(1)
        assert {b.node.lead for b in net.boxes.values()} == {lead}


def test_vote_is_in_the_hard_state_of_the_ready_that_answers() -> None:
    """Persist before send: the granted vote must be durable before VOTE_RESP leaves."""
    net = Net(pre_vote=False)
    net.node(1).campaign()
    net.deliver_matching(lambda m: m.to == 2)
    rd = net.node(2).ready()
    assert rd.hard_state == HardState(term=2, vote=1, commit=1)
    assert [m.type.name for m in rd.messages] == ["VOTE_RESP"]
    assert rd.must_sync


def _one_ahead() -> dict[int, MemoryStorage]:
    """Node 1 holds an entry of term 2 (from its own term-2 leadership) the others lack."""
    storages = {i: MemoryStorage.bootstrap((1, 2, 3)) for i in (1, 2, 3)}
    storages[1].append([Entry(2, 2)])
    for s in storages.values():
        s.set_hard_state(HardState(term=2, vote=1, commit=1))
    return storages


def test_candidate_with_a_stale_log_is_refused() -> None:
    net = Net(storages=_one_ahead(), pre_vote=False)
    net.campaign(2)
    assert "1->2 VOTE_RESP term=3 rejected" in net.trace
    assert "3->2 VOTE_RESP term=3" in net.trace  # 3 is no more up to date than 2
    assert net.leaders() == [2]  # {2, 3} is a quorum; 1's uncommitted entry is replaced
    assert net.boxes[1].storage.term(2) == 3


def test_candidate_with_the_longest_log_wins() -> None:
    net = Net(storages=_one_ahead(), pre_vote=False)
    net.campaign(1)
    assert net.leaders() == [1]
    assert all(b.storage.term(2) == 2 for b in net.boxes.values())


def test_prevote_keeps_a_partitioned_node_from_disrupting() -> None:
    net = Net()
    net.elect(1)
    net.isolate(3)
    for _ in range(100):
        net.tick(3)
        net.stabilize()
    # Pre-votes failed: node 3 never raised its term.
    assert net.node(3).term == 2
    assert net.node(3).role is StateRole.PRE_CANDIDATE
    net.recover()
    net.tick_all(5)
    assert net.leaders() == [1]
    assert set(net.terms().values()) == {2}
    assert net.node(3).lead == 1


def test_without_prevote_a_rejoining_node_disrupts() -> None:
    """What pre-vote prevents: the isolated node's term grows and deposes the leader."""
    net = Net(pre_vote=False, check_quorum=False)
    net.elect(1)
    net.isolate(3)
    for _ in range(100):
        net.tick(3)
        net.stabilize()
    assert net.node(3).term > 2
    net.recover()
    net.tick_all(20)
    assert net.node(1).term > 2  # the healthy leader was forced out of its term


def test_check_quorum_leader_steps_down_without_quorum() -> None:
    net = Net()
    net.elect(1)
    net.isolate(1)
    net.tick(1, 2 * 10)
    net.stabilize()
    assert net.node(1).role is StateRole.FOLLOWER
    assert net.node(1).lead == 0


def test_without_check_quorum_an_isolated_leader_stays() -> None:
    net = Net(check_quorum=False)
    net.elect(1)
    net.isolate(1)
    net.tick(1, 50)
    net.stabilize()
    assert net.node(1).role is StateRole.LEADER


def test_check_quorum_lease_ignores_vote_requests() -> None:
    """Followers that heard from a leader within the election timeout ignore a higher-term
    vote request (e.g. from a removed node that does not know it)."""
    net = Net(pre_vote=False)
    net.elect(1)
    net.isolate(3)
    net.tick(3, 30)  # node 3 campaigns alone, term rises
    net.stabilize()
    term3 = net.node(3).term
    assert term3 > 2
    net.recover()
    net.node(3).campaign()
    net.deliver_matching(lambda m: m.type.name == "VOTE")
    assert net.node(2).term == 2 and net.node(2).lead == 1  # ignored, no answer
    net.collect()
    assert not [m for m in net.queue if m.type.name == "VOTE_RESP"]


def test_rejoining_candidate_with_higher_term_is_absorbed() -> None:
    """Without pre-vote an isolated node's term runs ahead; once back, the cluster moves to
    its term (the stale leader learns it from the answer to a heartbeat) and re-elects."""
    net = Net(pre_vote=False)
    net.elect(1)
    net.isolate(2)
    net.tick(2, 30)
    net.stabilize()
    assert net.node(2).role is StateRole.CANDIDATE
    high = net.node(2).term
    net.recover()
    net.tick_all(40)
    assert len(net.leaders()) == 1
    assert set(net.terms().values()) == {max(net.terms().values())}
    assert max(net.terms().values()) >= high


def test_restart_keeps_term_vote_and_log() -> None:
    net = Net()
    net.elect(1)
    net.propose(1, b"a")
    before = net.node(2).status().hard_state
    net.restart(2)
    st = net.node(2).status()
    assert st.hard_state == before
    assert st.soft_state.role is StateRole.FOLLOWER
    net.stabilize()
    net.tick_all(2)
    assert net.data_applied(2) == [b"a"]  # re-applied after the restart
    net.propose(1, b"b")
    assert net.data_applied(2) == [b"a", b"b"]


def test_single_node_elects_itself_and_commits_alone() -> None:
    net = Net((1,))
    net.elect(1)
    net.propose(1, b"x")
    assert net.data_applied(1) == [b"x"]
    assert net.trace == []  # nobody to talk to


def test_forget_leader_elects_a_successor_within_a_tick_or_two() -> None:
    """Both followers saw the leader's stream end (it was killed): each forgets it, grants
    votes at once (no lease), and the lower ID campaigns after 1 tick, the other only after
    1 + election_tick/2 (not 10..19 ticks, and no split vote when both notice at once)."""
    for seed in range(50):
        net = Net(seed=seed)
        net.elect(1)
        net.isolate(1)  # dead
        for f in (2, 3):
            net.node(f).forget_leader(1)
            assert net.node(f).lead == 0
        ticks = 0
        while not [n for n in net.leaders() if n != 1]:
            net.tick(2)
            net.tick(3)
            net.stabilize()
            ticks += 1
            assert ticks <= 2, seed
        assert net.leaders() == [1, 2] or net.leaders() == [2, 1]  # 1 is cut off, unaware
        assert net.node(2).lead == net.node(3).lead == 2
        assert net.node(2).term == 3  # one election, no split vote


def test_forget_leader_lets_the_next_in_line_win_when_the_first_cannot() -> None:
    """The lowest survivor is down too (5 voters, 1 and 2 gone): 3 campaigns after 1 +
    5 ticks (its rank is 1), long before an election timeout."""
    net = Net((1, 2, 3, 4, 5))
    net.elect(1)
    net.isolate(1)
    net.isolate(2)
    for f in (3, 4, 5):
        net.node(f).forget_leader(1)
    ticks = 0
    while not [n for n in net.leaders() if n not in (1,)]:
        for f in (3, 4, 5):
            net.tick(f)
        net.stabilize()
        ticks += 1
        assert ticks <= 6
    assert net.node(4).lead == net.node(5).lead == 3


def test_forget_leader_is_a_false_alarm_when_the_leader_lives() -> None:
    """One follower forgets a live leader (its stream was rebuilt): its pre-vote is refused
    (the others are in lease), nobody's term moves, the next heartbeat restores it."""
    net = Net()
    net.elect(1)
    net.node(2).forget_leader(1)
    net.node(2).forget_leader(3)  # not its leader: ignored
    net.node(1).forget_leader(1)  # a leader: ignored
    assert net.node(2).lead == 0 and net.node(1).role is StateRole.LEADER
    for _ in range(5):
        net.tick(2)
        net.stabilize()
    net.tick(1)
    net.stabilize()
    assert net.leaders() == [1]
    assert set(net.terms().values()) == {2}
    assert net.node(2).lead == 1
