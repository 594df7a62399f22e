"""A deterministic simulation of a Raft cluster: everything (network, disks, crashes,
partitions, membership changes, clients) is drawn from one seeded random.Random, so a
seed replays exactly.

A run has three phases:
  chaos     faults of the seed's profile, clients, membership changes, transfers;
  heal      all links healed, the network made reliable, crashed members restarted;
            within `liveness_ticks` a leader must exist and a marker proposal must be
            applied by every live member;
  check     the client history must be linearizable.
Safety invariants (tests/sim/invariants.py) are checked after every step throughout.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, replace

from shoal.manager.raft.config import idle_heartbeat_tick
from shoal.raft import (
    ConfChange,
    ConfChangeType,
    MemoryStorage,
    ProposalDropped,
    RawNode,
    StateRole,
)
from tests.sim.disk import SimDisk
from tests.sim.history import History, PendingOp
from tests.sim.invariants import SafetyChecker, SafetyViolation
from tests.sim.kv import KV
from tests.sim.linearizability import check_history
from tests.sim.network import SimNetwork
from tests.sim.scenario import Scenario
from tests.sim.simnode import CrashPoint, NodeCrashed, SimNode

__all__ = ["REPLAY", "Scenario", "SimFailure", "Simulation"]

UNITS_PER_TICK = 10
REPLAY = ".venv/bin/pytest tests/sim/test_raft_sim.py --seed {seed}"
# (election, heartbeat) ticks a retimed node takes: tighter, looser and the etcd-like ones
RETIMINGS = ((3, 1), (5, 1), (10, 1), (10, 3), (15, 2))


class SimFailure(AssertionError):
    pass


@dataclass
class Client:
    id: int
    seq: int = 0
    op: PendingOp | None = None


class Simulation:
    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.rng = random.Random(sc.seed)
        self.net = SimNetwork(random.Random(self.rng.getrandbits(64)), sc.net)
        self.checker = SafetyChecker()
        self.history = History()
        self.events: deque[str] = deque(maxlen=60)
        self.now = 0
        self.tick_no = 0
        self.nodes: dict[int, SimNode] = {}
        self.restart_at: dict[int, int] = {}
        self.stop_at: dict[int, int] = {}
        self.removed: set[int] = set()
        self.joining: set[int] = set()
        self.next_id = 100
        self.next_value = 1
        self.partition_until = 0
        self.clients = [Client(i + 1) for i in range(sc.clients)]
        self.clients_on = True
        self.crashes = 0
        self.quiet_ticks = 0  # ticks a driver sleeping until the due tick would not wake for
        self.liveness_ticks_used: int | None = None
        self.timing = (sc.election_tick, sc.heartbeat_tick)  # (election, heartbeat) ticks
        self.retiming: set[int] = set()  # running nodes still on the previous timings
        voters = tuple(range(1, sc.nodes + 1))
        for i in voters:
            self._add_node(i, MemoryStorage.bootstrap(voters, KV().snapshot()))

    # --- plumbing ------------------------------------------------------------------------

    def trace(self, what: str) -> None:
        self.events.append(f"[t{self.tick_no}] {what}")

    def _add_node(self, node_id: int, storage: MemoryStorage | None) -> SimNode:
        node = SimNode(self, node_id, SimDisk(storage))
        self.nodes[node_id] = node
        node.start()
        return node

    def up_nodes(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.raw is not None]

    def run_node(self, node: SimNode) -> None:
        try:
            node.process()
        except NodeCrashed as exc:
            self._crashed(node, str(exc))

    def _crashed(self, node: SimNode, where: str) -> None:
        node.crash()
        self.crashes += 1
        self.restart_at[node.id] = self.tick_no + self.rng.randint(*self.sc.restart_after)
        self.trace(f"n{node.id} crashed {where}")

    def leader(self) -> SimNode | None:
        best: SimNode | None = None
        for n in self.up_nodes():
            assert n.raw is not None
            if n.raw.role is StateRole.LEADER and (best is None or n.raw.term > best.raw.term):  # type: ignore[union-attr]
                best = n
        return best

    # --- the run -------------------------------------------------------------------------

    def run(self) -> Simulation:
        try:
            for _ in range(self.sc.chaos_ticks):
                self.step(chaos=True)
            self.heal()
            self.check_liveness()
            ok, why = check_history(self.history.for_checker())
            if not ok:
                raise SafetyViolation(f"linearizability: {why}")
        except Exception as exc:  # any escape is a failure of this seed: report how to replay
            raise SimFailure(self.failure_report(exc)) from exc
        return self

    def failure_report(self, exc: BaseException) -> str:
        nodes = " ".join(repr(n) for n in self.nodes.values())
        return (
            f"raft simulation failed: seed={self.sc.seed} at tick {self.tick_no}: "
            f"{type(exc).__name__}: {exc}\n"
            f"replay: {REPLAY.format(seed=self.sc.seed)}\n"
            f"scenario: {self.sc.summary()}\n"
            f"nodes: {nodes}\n"
            "last events:\n  " + "\n  ".join(self.events)
        )

    def step(self, *, chaos: bool) -> None:
        self.tick_no += 1
        start = self.now
        if chaos:
            self.nemesis()
            self.operator()
        self._lifecycle()
        self._clients()
        up = self.up_nodes()
        self.rng.shuffle(up)
        for node in up:
            if node.raw is not None:
                self.tick_node(node.raw)
                self.run_node(node)
        self.deliver_until(start + UNITS_PER_TICK)
        self.now = start + UNITS_PER_TICK

    def tick_node(self, raw: RawNode) -> None:
        """Tick `raw`, checking the promise a driver sleeping until the due tick relies on
        (`RawNode.ticks_until_due`, raft-driver.md "Due ticks"): a tick that hands anything
        over (a message, a role, term or commit change) is one the core said was due."""
        due = raw.ticks_until_due()
        idle = not raw.has_ready()
        raw.tick()
        if idle and raw.has_ready() and due != 1:
            raise AssertionError(f"n{raw.id}: a tick acted {due - 1} tick(s) before it was due")
        self.quiet_ticks += due > 1

    def deliver_until(self, until: int) -> None:
        while (due := self.net.next_due(until)) is not None:
            self.now, m = due
            node = self.nodes.get(m.to)
            if node is None or node.raw is None:
                continue
            node.raw.step(m)
            self.run_node(node)

    def _lifecycle(self) -> None:
        for node_id, at in list(self.restart_at.items()):
            if at <= self.tick_no:
                del self.restart_at[node_id]
                if node_id not in self.removed:
                    self.nodes[node_id].start()
                    self.trace(f"n{node_id} restarted")
        for node_id, at in list(self.stop_at.items()):
            if at <= self.tick_no:
                del self.stop_at[node_id]
                self.nodes[node_id].stop()
                self.restart_at.pop(node_id, None)
                self.trace(f"n{node_id} stopped (removed)")

    # --- faults --------------------------------------------------------------------------

    def nemesis(self) -> None:
        sc, r = self.sc, self.rng
        if self.partition_until and self.tick_no >= self.partition_until:
            self.net.heal()
            self.partition_until = 0
            self.trace("network healed")
        elif not self.partition_until and sc.partition_rate and r.random() < sc.partition_rate:
            self._partition()
        if sc.crash_rate and r.random() < sc.crash_rate:
            members = [n for n in self.nodes.values() if n.id not in self.removed]
            down = sum(1 for n in members if n.raw is None)
            candidates = [n for n in members if n.raw is not None]
            if candidates and down < (len(members) + 1) // 2:
                # Leaders get half of the crashes: their failures are the interesting ones.
                lead = self.leader()
                victim = lead if lead is not None and r.random() < 0.5 else r.choice(candidates)
                point = r.choice([None, *CrashPoint])
                if point is None:
                    self._crashed(victim, "between steps")
                else:
                    victim.crash_at = point
        self._retime()
        up = self.up_nodes()
        if sc.forget_rate and up and r.random() < sc.forget_rate:
            # a transport saw a stream end: really dead leaders and false alarms alike
            node = r.choice(up)
            if node.raw is not None and node.raw.lead:
                self.trace(f"n{node.id} forgets leader n{node.raw.lead}")
                node.raw.forget_leader(node.raw.lead)
                self.run_node(node)
        if sc.transfer_rate and r.random() < sc.transfer_rate:
            lead = self.leader()
            if lead is not None and lead.raw is not None:
                voters = [v for v in lead.raw.conf_state.voters if v != lead.id]
                if voters:
                    to = r.choice(voters)
                    lead.raw.transfer_leadership(to)
                    self.trace(f"transfer n{lead.id} -> n{to}")
                    self.run_node(lead)

    def _retime(self) -> None:
        """A `swarm update` of the Raft timings: every running node takes the new ones,
        each a few ticks after the others (as the managers apply the spec), so for a while
        they disagree — which may cost elections but never safety. A node that starts
        takes the current ones."""
        r = self.rng
        if self.sc.retime_rate and r.random() < self.sc.retime_rate:
            self.timing = r.choice(RETIMINGS)
            self.retiming = {n.id for n in self.up_nodes()}
            self.trace(f"retime to election {self.timing[0]} heartbeat {self.timing[1]}")
        for node_id in sorted(self.retiming):
            if r.random() < 0.3:
                self._apply_timing(node_id)

    def _apply_timing(self, node_id: int) -> None:
        self.retiming.discard(node_id)
        raw = self.nodes[node_id].raw
        if raw is not None:  # a node down meanwhile starts with the new timings
            raw.set_timing(*self.timing, self.idle_heartbeat_tick())
            self.trace(f"n{node_id} retimed")

    def idle_heartbeat_tick(self) -> int:
        """What the driver derives from the current timings, when the scenario says so."""
        if not self.sc.idle_heartbeat:
            return 0
        return idle_heartbeat_tick(*self.timing)

    def _partition(self) -> None:
        r = self.rng
        ids = sorted(self.nodes)
        kind = r.choice(("split", "isolate", "asymmetric", "isolate-leader"))
        if kind == "split":
            r.shuffle(ids)
            k = r.randint(1, len(ids) - 1)
            self.net.partition([set(ids[:k]), set(ids[k:])])
        elif kind == "asymmetric":
            for _ in range(r.randint(1, len(ids))):
                a, b = r.sample(ids, 2)
                self.net.block(a, b)
        else:
            lead = self.leader() if kind == "isolate-leader" else None
            victim = lead.id if lead is not None else r.choice(ids)
            self.net.partition([{victim}, set(ids) - {victim}])
        self.partition_until = self.tick_no + r.randint(5, 60)
        self.trace(f"partition {kind}: blocked {sorted(self.net.blocked)}")

    # --- membership (an operator acting through the leader) ------------------------------

    def operator(self) -> None:
        sc, r = self.sc, self.rng
        if not sc.membership or r.random() > 0.08:
            return
        lead = self.leader()
        if lead is None or lead.raw is None:
            return
        st = lead.raw.status()
        voters, learners = set(st.conf_state.voters), set(st.conf_state.learners)
        max_voters = max(sc.nodes, 4)
        caught_up = [i for i in learners if st.progress[i].match >= st.hard_state.commit - 1]
        cc: ConfChange | None = None
        if caught_up and len(voters) < max_voters:
            cc = ConfChange(ConfChangeType.ADD_NODE, r.choice(caught_up))
        elif not learners and len(voters) < max_voters and r.random() < 0.6:
            stray = sorted(self.joining - voters - learners)
            cc = ConfChange(ConfChangeType.ADD_LEARNER, stray[0] if stray else self.next_id)
        elif len(voters) > 3 or learners:
            victim = r.choice(sorted(voters | learners) if len(voters) > 3 else sorted(learners))
            if victim == lead.id:
                others = [v for v in voters if v != lead.id]
                lead.raw.transfer_leadership(r.choice(others))
                self.trace(f"operator: transfer away from n{lead.id} before removing it")
                self.run_node(lead)
                return
            cc = ConfChange(ConfChangeType.REMOVE_NODE, victim)
        if cc is None:
            return
        try:
            lead.raw.propose_conf_change(cc)
        except ProposalDropped:
            return
        self.trace(f"operator: proposed {cc.type.name} n{cc.node_id} at n{lead.id}")
        if cc.type is ConfChangeType.ADD_LEARNER and cc.node_id not in self.nodes:
            self.next_id += 1
            self.joining.add(cc.node_id)
            self._add_node(cc.node_id, None)
        self.run_node(lead)

    def on_conf_applied(self, node: SimNode, cc: ConfChange) -> None:
        if cc.type is ConfChangeType.REMOVE_NODE and cc.node_id not in self.removed:
            self.removed.add(cc.node_id)
            self.joining.discard(cc.node_id)
            if cc.node_id in self.nodes:
                self.stop_at[cc.node_id] = self.tick_no + self.rng.randint(0, 30)
            self.trace(f"n{cc.node_id} removed (applied first at n{node.id})")
        elif cc.type is ConfChangeType.ADD_NODE:
            self.joining.discard(cc.node_id)

    # --- clients -------------------------------------------------------------------------

    def _clients(self) -> None:
        r, sc = self.rng, self.sc
        for c in self.clients:
            if c.op is not None:
                if c.op.outcome == "pending" and self.tick_no >= c.op.deadline:
                    self.history.time_out(c.op)
                if c.op.outcome != "pending":
                    c.op = None
            if c.op is not None or not self.clients_on or r.random() > sc.client_rate:
                continue
            up = [n for n in self.up_nodes() if n.id not in self.removed]
            if not up:
                continue
            node = r.choice(up)
            key = f"k{r.randrange(sc.keys)}"
            c.seq += 1
            deadline = self.tick_no + sc.client_timeout
            if r.random() < 0.5:
                value = self.next_value
                self.next_value += 1
                c.op = self.history.invoke(c.id, "put", key, value, deadline)
                node.client_put(c.op, c.seq)
                if sc.batch_puts:
                    continue  # proposed with the node's other puts of this tick
            else:
                c.op = self.history.invoke(c.id, "get", key, None, deadline)
                node.client_get(c.op)
            self.run_node(node)

    # --- healing and liveness ------------------------------------------------------------

    def heal(self) -> None:
        self.net.heal()
        self.net.profile = replace(self.sc.net, drop=0.0, duplicate=0.0, long_delay=0.0)
        self.partition_until = 0
        for node in self.nodes.values():
            node.crash_at = None
            if node.id in self.removed:
                if node.raw is not None:
                    node.stop()
            elif node.raw is None:
                node.start()
        self.restart_at.clear()
        self.stop_at.clear()
        for node_id in sorted(self.retiming):
            self._apply_timing(node_id)
        self.trace("healed: network reliable, every member up")

    def check_liveness(self) -> None:
        """A leader is elected and a proposal is applied everywhere within the bound."""
        marker: PendingOp | None = None
        marker_at = (0, 0)  # (node, tick) of the latest proposal of the marker
        start = self.tick_no
        for _ in range(self.sc.liveness_ticks):
            self.step(chaos=False)
            lead = self.leader()
            if lead is None or lead.raw is None:
                continue
            if marker is not None and marker.outcome == "ok":
                if self._converged(lead):
                    self.liveness_ticks_used = self.tick_no - start
                    return
                continue
            stale = marker_at[0] != lead.id or self.tick_no - marker_at[1] > 20
            if marker is None or marker.outcome == "failed" or stale:
                # The marker is outside the checked history; a re-proposal reuses its
                # session sequence number, so it applies once.
                marker = PendingOp(-1, 0, "put", "liveness", -1, self.tick_no, 1 << 60)
                marker_at = (lead.id, self.tick_no)
                lead.client_put(marker, 1)
                self.run_node(lead)
        raise SafetyViolation(
            f"liveness: no leader with a committed, applied proposal {self.sc.liveness_ticks} "
            f"ticks after healing (marker {marker.outcome if marker else 'never proposed'})"
        )

    def _converged(self, lead: SimNode) -> bool:
        assert lead.raw is not None
        # Learners may still be catching up (one entry per round trip with the smallest
        # message and window sizes); voters must have applied everything the leader has.
        target = lead.applied
        for i in lead.raw.conf_state.voters:
            node = self.nodes.get(i)
            if node is None or node.raw is None or node.applied < target:
                return False
        return True
