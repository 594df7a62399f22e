"""The SWIM core: membership, failure detection and dissemination as a pure state machine.

Nothing here opens a socket, reads a clock or draws a random number of its own: time is
`tick()`, packets come in through `step()`, full-state exchanges through
`handle_push_pull()` / `merge_push_pull()`, randomness from the `RandomSource` passed in,
and what to send is collected in `take_outputs()`. The same seed and the same inputs give
the same outputs, which is what lets the simulation replay a failure exactly.

The protocol is SWIM with hashicorp/memberlist's and Lifeguard's refinements:

* one probe per probe period, round-robin over a shuffled member list; no ack within
  `probe_timeout` -> ping-req through `indirect_checks` members, who nack if the target
  stays silent too; no ack by the period's end -> the target is *suspect*;
* a suspect is declared *dead* after a suspicion timeout that shrinks with independent
  confirmations (`Suspicion`); a member that hears itself suspected or declared dead
  refutes it with a higher incarnation number, which beats any older news about it;
* the local health multiplier (`awareness`) grows when this node misses acks or nacks or
  has to refute, and stretches its probe period: a slow node slows its accusations;
* every state change is broadcast by piggybacking on probe traffic and on gossip rounds,
  each broadcast `retransmit_mult * ceil(log10(n + 1))` times;
* a periodic TCP push-pull exchanges full state with one random member (anti-entropy;
  joins are push-pulls too), with a dead member now and then, so partitions heal, and at
  once with any key holder that talks to this node without being known to it.

The endpoint table rides on the same channels (`Record`s): see `endpoints.py`. While a
member is suspect its entries read as not ready (the mesh stops routing to it within a
probe period of its silence; a refutation restores them); when it is declared dead or
leaves, its records go in the same step.
"""

from __future__ import annotations

from shoal.gossip.broadcast import BroadcastQueue
from shoal.gossip.config import GossipConfig, retransmit_limit, suspicion_bounds
from shoal.gossip.endpoints import EndpointState
from shoal.gossip.members import Member, Members, MemberStatus, RandomSource
from shoal.gossip.messages import (
    Ack,
    Alive,
    Dead,
    MemberState,
    Message,
    Nack,
    Packet,
    Ping,
    PingReq,
    PushPull,
    Record,
    Suspect,
    encoded_size,
    envelope_size,
)
from shoal.gossip.outputs import MemberEvent, Output, SendPacket, StartPushPull
from shoal.gossip.probe import Prober
from shoal.gossip.suspicion import Suspicion

__all__ = ["MemberEvent", "Output", "SendPacket", "StartPushPull", "Swim"]


def _priority(msg: Message) -> int:
    # membership first: a record from a member that this very packet introduces is kept
    if isinstance(msg, Alive | Suspect | Dead):
        return 0
    return 1 if isinstance(msg, Record) else 2


class Swim:
    def __init__(
        self,
        node_id: str,
        addr: str,
        rng: RandomSource,
        config: GossipConfig | None = None,
        endpoints: EndpointState | None = None,
    ) -> None:
        self.node_id = node_id
        self.addr = addr
        self.config = config or GossipConfig()
        self.incarnation = 0
        self.now = 0
        self.leaving = False
        self.members = Members()
        self.endpoints = endpoints if endpoints is not None else EndpointState()
        self.endpoints.replicated = True
        self.endpoints.tombstone_ttl = self.config.tombstone_ttl
        self.endpoints.adopt_owner(node_id)
        self._rng = rng
        self._broadcasts = BroadcastQueue()
        self._suspicions: dict[str, Suspicion] = {}
        self.prober = Prober(node_id, self.config, self.members, rng, self._send, self._suspect)
        self._outputs: list[Output] = []
        self._strangers: dict[str, int] = {}  # unknown sources -> tick of the last sync
        self._events: list[MemberEvent] = []
        self._header = envelope_size(node_id, addr)
        self._next_push_pull = rng.randint(1, self.config.push_pull_interval)
        self._next_reconnect = rng.randint(1, self.config.reconnect_interval)
        self._queue_alive()

    # -- what the driver reads ----------------------------------------------------------
    def n(self) -> int:
        """Live members, this one included."""
        return len(self.members.live()) + 1

    def take_outputs(self) -> list[Output]:
        self._publish_local()
        out, self._outputs = self._outputs, []
        return out

    def take_events(self) -> list[MemberEvent]:
        events, self._events = self._events, []
        return events

    @property
    def awareness(self) -> int:
        return self.prober.awareness

    def pending_broadcasts(self) -> int:
        return len(self._broadcasts)

    def next_due(self) -> int:
        """The first tick after `now` at which `tick()` may have outputs or events: a
        probe, its ping-req or its end, a relay's nack, a suspicion's deadline, a gossip
        round while broadcasts wait, a push-pull or a reconnect. The ticks before it only
        move time (tombstones and dead members expire, relays are forgotten), so a driver
        may sleep until this tick and run the ones before it in a burst, when it wakes or
        before it hands the core any input: the core sees the same calls in the same order
        as when ticked every period, and nothing it would have sent comes later."""
        cfg = self.config
        now = self.now
        due = min(self.prober.next_due(), self._next_push_pull, self._next_reconnect)
        for s in self._suspicions.values():
            due = min(due, s.deadline)
        if len(self._broadcasts) or self.endpoints.has_changes():
            due = min(due, (now // cfg.gossip_interval + 1) * cfg.gossip_interval)
        return max(now + 1, due)

    # -- inputs -------------------------------------------------------------------------
    def note_lag(self) -> None:
        """The driver ran a tick late (its loop or CPU is overloaded): this node reads acks
        late too, so it probes more patiently for a while (local health +1)."""
        self.prober.adjust(1)

    def tick(self) -> None:
        cfg = self.config
        self.now += 1
        self.endpoints.advance(self.now)
        self._publish_local()
        self.prober.tick(self.now)
        self._check_suspicions()
        if self.now % cfg.gossip_interval == 0:
            self._gossip()
        if self.now >= self._next_push_pull:
            self._next_push_pull = self.now + cfg.push_pull_every(self.n())
            for m in self.members.sample(self._rng, 1, set()):
                self._outputs.append(StartPushPull(m.addr, join=False))
        if self.now >= self._next_reconnect:
            self._next_reconnect = self.now + cfg.reconnect_interval
            dead = [m for m in self.members.all() if m.status is MemberStatus.DEAD]
            if dead:
                self._outputs.append(StartPushPull(self._rng.choice(dead).addr, join=False))
        if self.now % cfg.probe_interval == 0:
            self._reap()

    def step(self, packet: Packet) -> None:
        stale = False
        for msg in sorted(packet.messages, key=_priority):
            if isinstance(msg, Suspect | Dead) and msg.node == self.node_id:
                stale |= msg.incarnation < self.incarnation
            if isinstance(msg, Alive):
                self._on_alive(msg)
            elif isinstance(msg, Suspect):
                self._on_suspect(msg)
            elif isinstance(msg, Dead):
                self._on_dead(msg)
            elif isinstance(msg, Record):
                self._on_record(msg, rebroadcast=True)
            elif isinstance(msg, Ping):
                if msg.target == self.node_id:  # else: meant for a former owner of the addr
                    self._send(packet.source_addr, [Ack(msg.seq)])
            elif isinstance(msg, PingReq):
                self.prober.on_ping_req(self.now, packet.source_addr, msg)
            elif isinstance(msg, Ack):
                self.prober.on_ack(msg.seq)
            elif isinstance(msg, Nack):
                self.prober.on_nack(msg.seq)
        if stale and not self.leaving:
            # the sender still spreads an accusation this node already refuted: correct it
            self._send(packet.source_addr, [Alive(self.node_id, self.addr, self.incarnation)])
        self._check_stranger(packet)

    def _check_stranger(self, packet: Packet) -> None:
        # A key holder this node does not know talks to it: a broadcast about it was lost
        # (a join storm can outrun the retransmit limit). Sync now, not at the next push-pull.
        source = packet.source
        if source == self.node_id or self.leaving or self.members.get(source) is not None:
            return
        last = self._strangers.get(source)
        if last is None or self.now - last >= self.config.probe_interval:
            self._strangers[source] = self.now
            self._outputs.append(StartPushPull(packet.source_addr, join=False))

    def join(self, addrs: list[str]) -> None:
        for addr in addrs:
            if addr != self.addr:
                self._outputs.append(StartPushPull(addr, join=True))

    def leave(self) -> None:
        """Announce a graceful departure; the driver should keep ticking a little while."""
        self.leaving = True
        msg = Dead(self.node_id, self.incarnation, self.node_id)
        self._queue_member(msg)
        for m in self.members.live():  # rare and final: tell everyone, not a few
            self._send(m.addr, [msg])

    def push_pull_state(self, join: bool) -> PushPull:
        me = MemberState(self.node_id, self.addr, self.incarnation, "alive")
        others = [
            MemberState(m.node_id, m.addr, m.incarnation, m.status.value)
            for m in self.members.all()
        ]
        return PushPull(self.node_id, self.addr, join, [me, *others], self.endpoints.records())

    def handle_push_pull(self, msg: PushPull) -> PushPull:
        """Serve a push-pull: answer with this node's state, then merge the other's."""
        reply = self.push_pull_state(join=False)
        self.merge_push_pull(msg)
        return reply

    def merge_push_pull(self, msg: PushPull) -> None:
        for ms in msg.members:
            if ms.node == self.node_id and ms.status in ("dead", "left"):
                if not self.leaving and ms.incarnation >= self.incarnation:
                    self._refute(ms.incarnation, dead=True, accuser=msg.source)
            elif ms.status == "alive":
                self._on_alive(Alive(ms.node, ms.addr, ms.incarnation))
            elif ms.status == "left":
                self._on_dead(Dead(ms.node, ms.incarnation, ms.node))
            else:
                # never trust another node's "dead": suspect, so the member may refute.
                # In this node's name: a relayed suspicion is no independent confirmation.
                self._on_suspect(Suspect(ms.node, ms.incarnation, self.node_id))
        for rec in msg.records:
            self._on_record(rec, rebroadcast=False)

    def reconcile(self, authoritative: set[tuple[str, str]]) -> int:
        """Drop endpoint entries the managers do not know; see `EndpointState.reconcile`."""
        removed = self.endpoints.reconcile(authoritative, self.config.reconcile_grace)
        self._publish_local()
        return removed

    # -- membership ---------------------------------------------------------------------
    def _on_alive(self, msg: Alive) -> None:
        if msg.node == self.node_id:
            if msg.incarnation > self.incarnation or (
                msg.incarnation == self.incarnation and msg.addr != self.addr
            ):
                self._refute(msg.incarnation)  # news of an older life of this node id
            return
        m = self.members.get(msg.node)
        if m is None:
            m = Member(msg.node, msg.addr, msg.incarnation, MemberStatus.ALIVE, self.now)
            self.members.add(m, self._rng)
            self._event(m, "joined")
        elif msg.incarnation <= m.incarnation:
            return
        else:
            was = m.status
            m.incarnation, m.addr = msg.incarnation, msg.addr
            self._suspicions.pop(m.node_id, None)
            if was is not MemberStatus.ALIVE:
                self._set_status(m, MemberStatus.ALIVE, f"refuted {was.value}")
            if not was.live:
                # its records were dropped when it died: fetch them back at once
                self._outputs.append(StartPushPull(m.addr, join=False))
        self._queue_member(msg)

    def _on_suspect(self, msg: Suspect) -> None:
        if msg.node == self.node_id:
            if not self.leaving and msg.incarnation >= self.incarnation:
                self._refute(msg.incarnation, accuser=msg.origin)
            return
        m = self.members.get(msg.node)
        if m is None or msg.incarnation < m.incarnation or not m.status.live:
            return
        if m.status is MemberStatus.SUSPECT:
            s = self._suspicions.get(m.node_id)
            if s is not None and s.confirm(msg.origin):
                self._queue_member(msg)
            return
        m.incarnation = msg.incarnation
        n = self.n()
        low, high = suspicion_bounds(self.config, n)
        k = self.config.suspicion_mult - 2
        self._suspicions[m.node_id] = Suspicion(msg.origin, k if n - 2 >= k else 0, low, high,
                                                self.now)
        self._set_status(m, MemberStatus.SUSPECT, f"suspected by {msg.origin}")
        self._queue_member(msg)

    def _suspect(self, node: str, incarnation: int) -> None:
        self._on_suspect(Suspect(node, incarnation, self.node_id))

    def _check_suspicions(self) -> None:
        for node, s in list(self._suspicions.items()):
            if self.now < s.deadline:
                continue
            del self._suspicions[node]
            m = self.members.get(node)
            if m is not None and m.status is MemberStatus.SUSPECT:
                self._on_dead(
                    Dead(node, m.incarnation, self.node_id),
                    f"no refutation within {self.now - s.start} ticks "
                    f"({s.confirmations} confirmations)",
                )

    def _on_dead(self, msg: Dead, reason: str = "") -> None:
        if msg.node == self.node_id:
            if not self.leaving and msg.incarnation >= self.incarnation:
                self._refute(msg.incarnation, dead=True, accuser=msg.origin)
            return
        m = self.members.get(msg.node)
        if m is None or msg.incarnation < m.incarnation or not m.status.live:
            return
        m.incarnation = msg.incarnation
        self._suspicions.pop(m.node_id, None)
        left = msg.origin == msg.node
        status = MemberStatus.LEFT if left else MemberStatus.DEAD
        self._set_status(m, status, reason or ("left" if left else f"declared by {msg.origin}"))
        self._queue_member(msg)
        self.endpoints.remove_owner(msg.node)

    def _refute(self, incarnation: int, dead: bool = False, accuser: str = "") -> None:
        self.incarnation = max(self.incarnation, incarnation) + 1
        self.prober.adjust(1)
        self._queue_alive()
        m = self.members.get(accuser)
        if m is not None and m.status.live:
            # the accuser's timer is running: tell it directly, not only by epidemic
            self._send(m.addr, [Alive(self.node_id, self.addr, self.incarnation)])
        if dead:  # the others dropped this node's records: send them again
            for rec in self.endpoints.owned_records(self.node_id):
                self._queue_record(rec)

    def _reap(self) -> None:
        self._strangers = {
            k: t for k, t in self._strangers.items() if self.now - t < self.config.probe_interval
        }
        for m in self.members.all():
            if not m.status.live and self.now - m.since >= self.config.dead_reap:
                self.members.forget(m.node_id)

    # -- endpoint records ---------------------------------------------------------------
    def _on_record(self, rec: Record, rebroadcast: bool) -> None:
        if self.endpoints.is_own(rec.owner):
            fix = self.endpoints.refute(rec)
            if fix is not None:
                self._queue_record(fix)
            return
        m = self.members.get(rec.owner)
        if m is None or not m.status.live:
            return  # a dead member's records stay gone until it refutes
        if self.endpoints.merge(rec) and rebroadcast:
            self._queue_record(rec)

    def _publish_local(self) -> None:
        for rec in self.endpoints.take_changes():
            if rec.owner == self.node_id:
                self._queue_record(rec)

    def announce(self) -> None:
        """Send this node's fresh endpoint changes to every live member at once, besides
        gossiping them as usual. A task that turns ready is then known cluster-wide one
        packet later, before its agent tells the managers it runs; and so before they stop
        the next task of a rolling update, whose node would otherwise withdraw it from a
        table that does not hold its replacement yet."""
        fresh = [r for r in self.endpoints.take_changes() if r.owner == self.node_id]
        if not fresh:
            return
        for rec in fresh:
            self._queue_record(rec)
        batches: list[list[Message]] = [[]]
        used = self._header
        for rec in fresh:
            size = encoded_size(rec)
            if batches[-1] and used + size > self.config.max_packet:
                batches.append([])
                used = self._header
            batches[-1].append(rec)
            used += size
        for m in self.members.live():
            for batch in batches:
                self._outputs.append(SendPacket(m.addr, Packet(self.node_id, self.addr, batch)))

    # -- sending ------------------------------------------------------------------------
    def _gossip(self) -> None:
        if not len(self._broadcasts):
            return
        since = self.now - self.config.gossip_to_dead
        for m in self.members.sample(self._rng, self.config.gossip_fanout, set(), since):
            msgs = self._broadcasts.take(self.config.max_packet - self._header, self._limit())
            if not msgs:
                break
            self._outputs.append(SendPacket(m.addr, Packet(self.node_id, self.addr, msgs)))

    def _send(self, addr: str, msgs: list[Message]) -> None:
        """Send `msgs` to `addr` with as many broadcasts piggybacked as fit."""
        used = self._header + sum(encoded_size(m) for m in msgs)
        extra = self._broadcasts.take(self.config.max_packet - used, self._limit())
        self._outputs.append(SendPacket(addr, Packet(self.node_id, self.addr, msgs + extra)))

    def _limit(self) -> int:
        return retransmit_limit(self.config, self.n())

    def _queue_record(self, rec: Record) -> None:
        self._broadcasts.queue(("e", rec.owner, rec.key), rec, self.config.record_factor)

    def _queue_member(self, msg: Alive | Suspect | Dead) -> None:
        self._broadcasts.queue(("m", msg.node), msg, self.config.member_factor)

    def _queue_alive(self) -> None:
        alive = Alive(self.node_id, self.addr, self.incarnation)
        self._queue_member(alive)

    def _set_status(self, m: Member, status: MemberStatus, reason: str) -> None:
        m.status, m.since = status, self.now
        # a suspect's endpoints stop getting traffic now, not when the suspicion ends
        self.endpoints.set_suspect(m.node_id, status is MemberStatus.SUSPECT)
        self._event(m, reason)

    def _event(self, m: Member, reason: str) -> None:
        self._events.append(MemberEvent(m.node_id, m.addr, m.status, m.incarnation, reason))

