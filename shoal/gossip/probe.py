"""Failure detection's probing half (pure): the probe in flight, the ping-reqs this node
relays, and the local health multiplier.

One probe per period: ping the next member; no ack within `probe_timeout` ticks -> ask
`indirect_checks` others to ping it (ping-req) and nack if it stays silent; no ack by the
period's end -> report it suspect. A suspect's ping carries the suspicion (Lifeguard's
buddy system): it learns of it at once and refutes. The period and the direct timeout are
`probe_interval` and `probe_timeout` times `awareness + 1`: Lifeguard's local health
multiplier, raised by missed nacks (this node, not the target, is probably slow), by the
driver when its own ticks run late (`Swim.note_lag`: a loaded node reads every ack late)
and lowered by every successful probe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shoal.gossip.config import GossipConfig
from shoal.gossip.members import Members, MemberStatus, RandomSource
from shoal.gossip.messages import Ack, Message, Nack, Ping, PingReq, Suspect

__all__ = ["Prober"]


@dataclass
class _Probe:
    seq: int
    target: str
    incarnation: int  # the target's when probed: a suspicion names it, a refutation beats it
    direct_until: int  # tick after which members are asked to ping-req
    ends: int  # tick at which, still without an ack, the target becomes suspect
    indirect_sent: bool = False
    expected_nacks: int = 0
    nacks: int = 0


@dataclass
class _Relay:
    requester_addr: str
    requester_seq: int
    nack_at: int | None  # tick to send a nack if the target is still silent
    expires: int


class Prober:
    def __init__(
        self,
        node_id: str,
        config: GossipConfig,
        members: Members,
        rng: RandomSource,
        send: Callable[[str, list[Message]], None],
        suspect: Callable[[str, int], None],
    ) -> None:
        self.node_id = node_id
        self.config = config
        self.awareness = 0
        self._members = members
        self._rng = rng
        self._send = send
        self._suspect = suspect
        self._probe: _Probe | None = None
        self._next_probe = 1
        self._relays: dict[int, _Relay] = {}
        self._seq = 0

    def tick(self, now: int) -> None:
        self._check_probe(now)
        if now >= self._next_probe:
            self._start_probe(now)
        for seq, relay in list(self._relays.items()):
            if relay.nack_at is not None and now >= relay.nack_at:
                relay.nack_at = None
                self._send(relay.requester_addr, [Nack(relay.requester_seq)])
            if now >= relay.expires:
                del self._relays[seq]

    def next_due(self) -> int:
        """The earliest tick at which `tick()` may send or suspect: the next probe, the
        probe in flight's ping-req and end, a relay's nack. (A relay's expiry sends
        nothing: it may run late, in a later tick's catch-up.)"""
        due = self._next_probe
        p = self._probe
        if p is not None:
            due = min(due, p.ends if p.indirect_sent else p.direct_until)
        for relay in self._relays.values():
            if relay.nack_at is not None:
                due = min(due, relay.nack_at)
        return due

    def adjust(self, delta: int) -> None:
        self.awareness = min(self.config.awareness_max - 1, max(0, self.awareness + delta))

    def on_ack(self, seq: int) -> None:
        if self._probe is not None and self._probe.seq == seq:
            self._probe = None
            self.adjust(-1)
            return
        relay = self._relays.pop(seq, None)
        if relay is not None:
            self._send(relay.requester_addr, [Ack(relay.requester_seq)])

    def on_nack(self, seq: int) -> None:
        if self._probe is not None and self._probe.seq == seq:
            self._probe.nacks += 1

    def on_ping_req(self, now: int, requester: str, msg: PingReq) -> None:
        seq = self._next_seq()
        cfg = self.config
        nack_at = now + max(1, cfg.probe_timeout * 4 // 5) if msg.nack else None
        self._relays[seq] = _Relay(requester, msg.seq, nack_at, now + cfg.probe_interval)
        self._send(msg.target_addr, [Ping(seq, msg.target)])

    def _start_probe(self, now: int) -> None:
        target = self._members.next_probe(self._rng)
        period = self.config.probe_interval * (self.awareness + 1)
        self._next_probe = now + period
        if target is None:
            return
        seq = self._next_seq()
        deadline = now + self.config.probe_timeout * (self.awareness + 1)
        self._probe = _Probe(seq, target.node_id, target.incarnation, deadline, now + period)
        msgs: list[Message] = [Ping(seq, target.node_id)]
        if target.status is MemberStatus.SUSPECT:
            # Lifeguard's buddy system: tell a suspect at once, so it can refute in time
            msgs.append(Suspect(target.node_id, target.incarnation, self.node_id))
        self._send(target.addr, msgs)

    def _check_probe(self, now: int) -> None:
        p = self._probe
        if p is None:
            return
        if not p.indirect_sent and now >= p.direct_until:
            p.indirect_sent = True
            target = self._members.get(p.target)
            if target is not None:
                peers = self._members.sample(self._rng, self.config.indirect_checks, {p.target})
                for peer in peers:
                    self._send(peer.addr, [PingReq(p.seq, p.target, target.addr, nack=True)])
                p.expected_nacks = len(peers)
        if now >= p.ends:
            self._probe = None
            # without relays to nack, any failed probe counts against this node's health
            self.adjust(max(0, p.expected_nacks - p.nacks) if p.expected_nacks else 1)
            self._suspect(p.target, p.incarnation)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq
