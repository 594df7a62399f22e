"""The SWIM core step by step: probes, ping-reqs and nacks, suspicion and refutation,
dead members' records, push-pull merging, packet budgets."""

from __future__ import annotations

from random import Random

import pytest

from shoal.errors import InvalidArgument
from shoal.gossip.broadcast import BroadcastQueue
from shoal.gossip.codec import encode_packet
from shoal.gossip.config import GossipConfig, retransmit_limit, suspicion_bounds
from shoal.gossip.core import SendPacket, StartPushPull, Swim
from shoal.gossip.endpoints import EndpointEntry
from shoal.gossip.members import MemberStatus
from shoal.gossip.messages import (
    Ack,
    Alive,
    Dead,
    EntryBody,
    MemberState,
    Nack,
    Packet,
    Ping,
    PingReq,
    PushPull,
    Record,
    Suspect,
)
from shoal.gossip.suspicion import Suspicion

CFG = GossipConfig()


def core(i: int, cfg: GossipConfig = CFG) -> Swim:
    return Swim(f"n{i}", f"10.0.0.{i}:7946", Random(i), cfg)


def meet(*cores: Swim) -> None:
    """Everyone learns everyone (what joins do), outputs discarded."""
    for a in cores:
        for b in cores:
            if a is not b:
                a.merge_push_pull(b.push_pull_state(join=True))
    for c in cores:
        c.take_outputs()
        c.take_events()


def packets(c: Swim) -> list[SendPacket]:
    return [o for o in c.take_outputs() if isinstance(o, SendPacket)]


def sent(c: Swim, kind: type) -> list[tuple[str, object]]:
    return [(p.addr, m) for p in packets(c) for m in p.packet.messages if isinstance(m, kind)]


def tick_until(c: Swim, kind: type, limit: int = 50) -> list[tuple[str, object]]:
    for _ in range(limit):
        c.tick()
        found = sent(c, kind)
        if found:
            return found
    raise AssertionError(f"no {kind.__name__} within {limit} ticks")


# -- probing ----------------------------------------------------------------------------
def test_a_ping_is_acked_and_the_ack_ends_the_probe() -> None:
    a, b = core(1), core(2)
    meet(a, b)
    ((addr, ping),) = tick_until(a, Ping)
    assert addr == b.addr and isinstance(ping, Ping) and ping.target == "n2"
    b.step(Packet(a.node_id, a.addr, [ping]))
    ((back, ack),) = sent(b, Ack)
    assert back == a.addr and ack == Ack(ping.seq)
    a.step(Packet(b.node_id, b.addr, [ack]))
    for _ in range(CFG.probe_interval - 1):
        a.tick()
        assert not sent(a, PingReq) and not sent(a, Suspect)


def test_a_ping_meant_for_another_node_is_not_acked() -> None:
    b = core(2)
    b.step(Packet("n1", "10.0.0.1:7946", [Ping(7, "someone-else")]))
    assert sent(b, Ack) == []


def test_silence_brings_ping_reqs_then_suspicion() -> None:
    a, b, c, d = core(1), core(2), core(3), core(4)
    meet(a, b, c, d)
    ((_, ping),) = tick_until(a, Ping)
    assert isinstance(ping, Ping)
    target = ping.target
    for _ in range(CFG.probe_timeout):
        a.tick()
    reqs = sent(a, PingReq)
    assert len(reqs) == 2 and all(isinstance(m, PingReq) and m.nack for _, m in reqs)
    assert {addr for addr, _ in reqs} == {x.addr for x in (b, c, d) if x.node_id != target}
    for _ in range(CFG.probe_interval - CFG.probe_timeout):
        a.tick()
    assert a.members.get(target).status is MemberStatus.SUSPECT  # type: ignore[union-attr]
    assert a.awareness == 2  # two relays asked, no nack: this node may be the sick one


def test_a_relay_forwards_the_ack_or_nacks_in_time() -> None:
    a, b, c = core(1), core(2), core(3)
    meet(a, b, c)
    b.step(Packet(a.node_id, a.addr, [PingReq(42, "n3", c.addr, nack=True)]))
    ((addr, ping),) = sent(b, Ping)
    assert addr == c.addr and isinstance(ping, Ping)
    for _ in range(CFG.probe_timeout * 4 // 5):
        b.tick()
    assert sent(b, Nack) == [(a.addr, Nack(42))]
    b.step(Packet(c.node_id, c.addr, [Ack(ping.seq)]))  # late, but still useful
    assert sent(b, Ack) == [(a.addr, Ack(42))]


def test_nacks_spare_the_probers_health() -> None:
    a, b, c, d = core(1), core(2), core(3), core(4)
    meet(a, b, c, d)
    ((_, ping),) = tick_until(a, Ping)
    assert isinstance(ping, Ping)
    for _ in range(CFG.probe_timeout):
        a.tick()
    for _, req in sent(a, PingReq):
        a.step(Packet("relay", "10.0.0.99:7946", [Nack(req.seq)]))  # type: ignore[attr-defined]
    for _ in range(CFG.probe_interval - CFG.probe_timeout):
        a.tick()
    assert a.awareness == 0


def test_a_lagging_node_probes_patiently() -> None:
    """Ticks run late (the driver's loop is overloaded): the local health multiplier
    rises, and with it the wait for a direct ack and the period, so an ack that a slow
    loop reads late does not make the target suspect; successful probes lower it again."""
    a, b, c = core(1), core(2), core(3)
    meet(a, b, c)
    a.note_lag()
    a.note_lag()
    assert a.awareness == 2
    ((_, ping),) = tick_until(a, Ping)
    assert isinstance(ping, Ping)
    for _ in range(CFG.probe_timeout * 3 - 1):  # three times the direct wait, less a tick
        a.tick()
        assert not sent(a, PingReq)
    target = next(x for x in (b, c) if x.node_id == ping.target)
    a.step(Packet(target.node_id, target.addr, [Ack(ping.seq)]))  # a late ack still counts
    assert a.awareness == 1
    for _ in range(CFG.probe_interval * 3):
        a.tick()
        packets(a)
    assert a.members.get(target.node_id).status is MemberStatus.ALIVE  # type: ignore[union-attr]
    for _ in range(10):
        a.note_lag()
    assert a.awareness == CFG.awareness_max - 1  # bounded


def test_a_suspects_ping_carries_the_suspicion() -> None:
    a, b = core(1), core(2)
    meet(a, b)
    a.step(Packet("n3", "10.0.0.3:7946", [Suspect("n2", 0, "n3")]))
    a.take_outputs()
    pkts = []
    for _ in range(3 * CFG.probe_interval):
        a.tick()
        pkts += [p for p in packets(a) if any(isinstance(m, Ping) for m in p.packet.messages)]
    assert pkts and all(Suspect("n2", 0, "n1") in p.packet.messages for p in pkts)


# -- suspicion, refutation, death ---------------------------------------------------------
def test_a_member_refutes_its_suspicion_with_a_higher_incarnation() -> None:
    b = core(2)
    b.step(Packet("n1", "10.0.0.1:7946", [Suspect("n2", 0, "n1")]))
    assert b.incarnation == 1 and b.awareness == 1
    b.tick()
    b.tick()
    assert Alive("n2", b.addr, 1) in [m for _, m in sent(b, Alive)] or b.pending_broadcasts()


def test_an_older_suspicion_cannot_touch_a_refuted_member() -> None:
    a, b = core(1), core(2)
    meet(a, b)
    a.step(Packet("n2", b.addr, [Alive("n2", b.addr, 3)]))
    a.step(Packet("n3", "10.0.0.3:7946", [Suspect("n2", 2, "n3")]))
    assert a.members.get("n2").status is MemberStatus.ALIVE  # type: ignore[union-attr]


def test_a_suspect_dies_after_the_timeout_and_sooner_with_confirmations() -> None:
    def time_to_death(confirmations: int) -> int:
        cores = [core(i) for i in range(1, 8)]
        meet(*cores)
        a = cores[0]
        a.step(Packet("n2", "10.0.0.2:7946", [Suspect("n7", 0, "n2")]))
        for origin in ("n3", "n4", "n5")[:confirmations]:
            a.step(Packet(origin, "10.0.0.3:7946", [Suspect("n7", 0, origin)]))
        for t in range(1, 1000):
            a.tick()
            # every ping is answered (n7's too: an ack is not a refutation), so no
            # suspicion of this node's own adds a confirmation
            for addr, ping in sent(a, Ping):
                assert isinstance(ping, Ping)
                a.step(Packet(ping.target, addr, [Ack(ping.seq)]))
            if a.members.get("n7").status is MemberStatus.DEAD:  # type: ignore[union-attr]
                return t
        raise AssertionError("never declared dead")

    low, high = suspicion_bounds(CFG, 7)
    assert time_to_death(0) == high
    assert low < time_to_death(1) < high
    assert time_to_death(2) == low == time_to_death(3)


def test_a_dead_members_records_go_and_stay_gone_until_it_refutes() -> None:
    a, b = core(1), core(2)
    meet(a, b)
    body = EntryBody("svc", "198.19.2.2", True)
    a.step(Packet("n2", b.addr, [Record("n2", "t1", 1, body)]))
    assert [e.task_id for e in a.endpoints.entries()] == ["t1"]
    a.step(Packet("n3", "10.0.0.3:7946", [Dead("n2", 0, "n3")]))
    assert a.endpoints.entries() == []
    a.step(Packet("n2", b.addr, [Record("n2", "t1", 1, body)]))  # a late echo
    assert a.endpoints.entries() == []
    a.take_outputs()
    a.step(Packet("n2", b.addr, [Alive("n2", b.addr, 1), Record("n2", "t1", 1, body)]))
    assert [e.task_id for e in a.endpoints.entries()] == ["t1"]
    assert StartPushPull(b.addr, join=False) in a.take_outputs()  # resync what it missed


def test_declared_dead_a_node_refutes_and_resends_its_records() -> None:
    b = core(2)
    b.endpoints.set_local(EndpointEntry("svc", "t1", "n2", "198.19.2.2", True))
    b.tick()
    b.step(Packet("n1", "10.0.0.1:7946", [Dead("n2", 0, "n1")]))
    assert b.incarnation == 1
    c = core(3)
    meet(b, c)
    for _ in range(10):
        b.tick()
        for p in packets(b):
            c.step(p.packet)
    assert [e.task_id for e in c.endpoints.entries()] == ["t1"]


def test_a_left_member_is_left_not_dead() -> None:
    a, b = core(1), core(2)
    meet(a, b)
    b.leave()
    for p in packets(b):
        a.step(p.packet)
    assert a.members.get("n2").status is MemberStatus.LEFT  # type: ignore[union-attr]
    b.step(Packet("n1", a.addr, [Dead("n2", 0, "n1")]))
    assert b.incarnation == 0  # a leaving node does not refute


def test_push_pull_turns_a_remote_dead_into_a_local_suspicion() -> None:
    a = core(1)
    state = PushPull("n2", "10.0.0.2:7946", False, [
        MemberState("n2", "10.0.0.2:7946", 0, "alive"),
        MemberState("n3", "10.0.0.3:7946", 0, "alive"),
    ], [])
    a.merge_push_pull(state)
    a.merge_push_pull(PushPull("n2", "10.0.0.2:7946", False, [
        MemberState("n3", "10.0.0.3:7946", 0, "dead"),
        MemberState("n1", a.addr, 0, "dead"),
    ], []))
    assert a.members.get("n3").status is MemberStatus.SUSPECT  # type: ignore[union-attr]
    assert a.incarnation == 1  # and this node refuted its own reported death


def test_a_member_that_hears_of_an_older_life_of_itself_jumps_past_it() -> None:
    a = core(1)
    a.step(Packet("n2", "10.0.0.2:7946", [Alive("n1", a.addr, 5)]))
    assert a.incarnation == 6


# -- dissemination ------------------------------------------------------------------------
def test_every_packet_fits_the_budget_and_every_record_gets_out() -> None:
    cfg = GossipConfig(max_packet=600)
    a, b = core(1, cfg), core(2, cfg)
    meet(a, b)
    for i in range(120):
        a.endpoints.set_local(EndpointEntry("service-" + "x" * 20, f"task-{i:04d}", "n1",
                                            f"198.19.1.{i}", True))
    seen: set[str] = set()
    for _ in range(400):
        a.tick()
        for p in packets(a):
            assert len(encode_packet(p.packet)) <= cfg.max_packet
            seen |= {m.key for m in p.packet.messages if isinstance(m, Record)}
    assert len(seen) == 120


def test_a_broadcast_goes_out_limit_times_least_sent_first() -> None:
    q = BroadcastQueue()
    q.queue(("m", "a"), Alive("a", "10.0.0.1:1", 0))
    q.queue(("m", "b"), Alive("b", "10.0.0.2:1", 0), factor=2)
    q.queue(("m", "a"), Alive("a", "10.0.0.1:1", 1))  # replaces the older news about a
    counts: dict[str, int] = {}
    for _ in range(10):
        for m in q.take(1000, limit=3):
            assert isinstance(m, Alive)
            counts[m.node] = counts.get(m.node, 0) + 1
    assert counts == {"a": 3, "b": 6}
    q.queue(("m", "c"), Alive("c", "10.0.0.3:1", 0))
    assert q.take(5, limit=3) == []  # does not fit: stays queued
    assert len(q) == 1


def test_suspicion_and_retransmit_figures() -> None:
    assert suspicion_bounds(CFG, 5) == (40, 240)
    assert suspicion_bounds(CFG, 100) == (80, 480)
    assert retransmit_limit(CFG, 5) == 4 and retransmit_limit(CFG, 50) == 8
    s = Suspicion("a", k=2, low=40, high=240, start=100)
    assert s.deadline == 340
    assert s.confirm("b") and not s.confirm("b") and not s.confirm("a")
    assert s.deadline == 100 + 113  # 240 - 200 * log(2) / log(3), floored
    assert s.confirm("c") and s.deadline == 140
    assert not s.confirm("d")  # enough already
    assert Suspicion("a", k=0, low=40, high=240, start=0).deadline == 40


@pytest.mark.parametrize("bad", [
    {"probe_interval": 0}, {"probe_timeout": 10}, {"max_packet": 100}, {"indirect_checks": -1},
])
def test_bad_configs_are_refused(bad: dict[str, int]) -> None:
    with pytest.raises(InvalidArgument):
        GossipConfig(**bad)  # type: ignore[arg-type]


def test_push_pull_interval_grows_past_32_members() -> None:
    assert CFG.push_pull_every(32) == CFG.push_pull_interval
    assert CFG.push_pull_every(64) == 2 * CFG.push_pull_interval


def test_announce_sends_fresh_local_records_to_every_live_member_at_once() -> None:
    a, b, c = core(1), core(2), core(3)
    meet(a, b, c)
    a.endpoints.set_local(EndpointEntry("svc", "t1", "n1", "198.19.1.2", True))
    a.announce()
    out = packets(a)
    assert sorted(p.addr for p in out) == ["10.0.0.2:7946", "10.0.0.3:7946"]
    for p in out:
        (rec,) = p.packet.messages
        assert isinstance(rec, Record) and rec.owner == "n1" and rec.key == "t1"
    for peer in (b, c):
        peer.step(out[0].packet)
        assert [e.task_id for e in peer.endpoints.entries()] == ["t1"]
    a.announce()  # nothing new: nothing sent
    assert packets(a) == []
    # a removal is announced the same way, and still gossiped afterwards
    a.endpoints.remove_local("t1")
    a.announce()
    assert len(packets(a)) == 2 and a.pending_broadcasts() >= 1
