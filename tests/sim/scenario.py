"""A simulation's parameters, all drawn from its seed (so the seed alone replays it)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from tests.sim.network import NetProfile

__all__ = ["Scenario"]


@dataclass(frozen=True)
class Scenario:
    seed: int
    nodes: int = 3
    chaos_ticks: int = 300
    liveness_ticks: int = 120
    net: NetProfile = field(default_factory=NetProfile)
    crash_rate: float = 0.0  # per tick
    partition_rate: float = 0.0  # per tick, when healed
    membership: bool = False
    transfer_rate: float = 0.0
    compact_every: int = 1000
    keep_tail: int = 0
    pre_vote: bool = True
    check_quorum: bool = True
    election_tick: int = 10
    heartbeat_tick: int = 1
    max_inflight: int = 256
    max_size_per_msg: int = 1 << 20
    clients: int = 3
    keys: int = 2
    client_rate: float = 0.5
    client_timeout: int = 30  # ticks
    restart_after: tuple[int, int] = (2, 40)  # ticks a crashed node stays down
    send_before_persist: bool = False  # a broken driver, to prove the checks bite
    retime_rate: float = 0.0  # per tick: one node takes other election/heartbeat ticks live
    batch_puts: bool = False  # a node's puts of one tick go in ONE entry (group commit)
    leader_sends_early: bool = False  # leaders send appends before their own write (rounds.py)
    forget_rate: float = 0.0  # per tick: a node forgets its leader (a stream ended)
    idle_heartbeat: bool = False  # an idle leader heartbeats every election/3 ticks (driver)

    @classmethod
    def from_seed(cls, seed: int, chaos_ticks: int | None = None) -> Scenario:
        """A fault profile drawn from the seed. Two in three seeds mix every fault; one in
        four is crash-heavy (fast crash/restart cycles, short election timeouts); one in
        ten is crash-heavy through a narrow pipe (one entry per message, one message in
        flight, no pre-vote): the leader changes that figure 8 of the Raft paper is about."""
        r = random.Random(f"scenario-{seed}")
        profile = r.choices(("mixed", "crashy", "narrow"), weights=(65, 25, 10))[0]
        crashy = profile != "mixed"
        sc = cls(
            seed=seed,
            nodes=3 if profile == "narrow" else r.choice((3, 3, 5)),
            net=NetProfile(
                drop=r.choice((0.0, 0.01, 0.05, 0.15)),
                duplicate=r.choice((0.0, 0.0, 0.03)),
                max_delay=r.choice((3, 6, 12)),
                long_delay=r.choice((0.0, 0.02, 0.05)),
            ),
            crash_rate=0.3 if crashy else r.choice((0.0, 0.02, 0.05)),
            restart_after=(1, 3) if crashy else (2, 40),
            election_tick=5 if crashy else 10,
            partition_rate=r.choice((0.0, 0.02, 0.05)),
            membership=profile != "narrow" and r.random() < 0.5,
            transfer_rate=r.choice((0.0, 0.0, 0.01)),
            compact_every=r.choice((4, 15, 1000)),
            keep_tail=r.choice((0, 0, 3)),
            pre_vote=profile != "narrow" and r.random() < 0.75,
            check_quorum=r.random() < 0.85,
            heartbeat_tick=1 if crashy else r.choice((1, 2, 3)),
            max_inflight=1 if profile == "narrow" else r.choice((1, 4, 256)),
            max_size_per_msg=1 if profile == "narrow" else r.choice((1, 100, 1 << 20)),
            keys=r.choice((1, 2, 3)),
            retime_rate=r.choice((0.0, 0.0, 0.03)),  # drawn after the others: earlier
            batch_puts=r.random() < 0.5,  # draws, hence older seeds' faults, unchanged
            leader_sends_early=r.random() < 0.75,
            forget_rate=r.choice((0.0, 0.02, 0.1)),
            idle_heartbeat=r.random() < 0.5,  # drawn last: older seeds' faults unchanged
        )
        if chaos_ticks is not None:
            sc = replace(sc, chaos_ticks=chaos_ticks)
        return sc

    def summary(self) -> str:
        n = self.net
        return (
            f"nodes={self.nodes} election={self.election_tick} hb={self.heartbeat_tick} "
            f"drop={n.drop} dup={n.duplicate} delay<={n.max_delay} long={n.long_delay} "
            f"crash={self.crash_rate}/{self.restart_after} part={self.partition_rate} "
            f"membership={self.membership} transfer={self.transfer_rate} "
            f"compact={self.compact_every}/{self.keep_tail} prevote={self.pre_vote} "
            f"checkquorum={self.check_quorum} inflight={self.max_inflight} "
            f"msgsize={self.max_size_per_msg} retime={self.retime_rate} "
            f"batch={self.batch_puts} early={self.leader_sends_early} forget={self.forget_rate} "
            f"idlebeat={self.idle_heartbeat}"
        )
