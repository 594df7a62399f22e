"""Gossip timings and limits, in ticks (the driver's tick is 100 ms by default).

The defaults follow hashicorp/memberlist's LAN profile (probe every 1 s, 500 ms probe
timeout, 3 indirect probes, suspicion 4x log10(n) probe intervals up to 6 times that,
retransmit 4x log10(n+1), gossip to 3 nodes every 200 ms), which is what Docker's swarm
runs through libnetwork's networkdb. Two departures, both because a missed message costs
more here (a missed refutation is a false death on that node, which drops the node's
endpoints from its mesh; a missed record is a connection sent to a task that is gone):
membership news is retransmitted twice and endpoint records three times as often as
memberlist would (at n = 8 the chance that a given node misses a broadcast falls from ~1%
to ~0.02% and ~0.0002%), and push-pull runs every 15 s instead of 30 s, bounding how long
a node that did miss one can lag.

A third (issue 13): probes run every 500 ms with a 300 ms ack timeout (memberlist: 1 s and
500 ms), while the suspicion timeout keeps memberlist's length (`suspicion_unit` is its 1 s
probe interval). A suspect's endpoints stop getting mesh traffic at once (see core.py), so
the time to suspicion is what a powered-off node costs the mesh; the time to a declared
death, which a false suspicion must not reach, is unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shoal.errors import InvalidArgument

__all__ = ["GossipConfig", "retransmit_limit", "suspicion_bounds"]


@dataclass(frozen=True)
class GossipConfig:
    probe_interval: int = 5  # ticks between probes (scaled by the local health multiplier)
    probe_timeout: int = 3  # ticks to wait for a direct ack before asking others
    indirect_checks: int = 3  # members asked to ping-req a silent target
    suspicion_mult: int = 4  # minimum suspicion: mult * max(1, log10 n) probe intervals
    suspicion_max_mult: int = 6  # maximum suspicion, without confirmations: min * this
    suspicion_unit: int = 10  # ticks of one suspicion "probe interval" (memberlist's 1 s)
    awareness_max: int = 8  # local health multiplier ceiling (Lifeguard's LHM)
    retransmit_mult: int = 4  # a broadcast is sent mult * ceil(log10(n + 1)) times
    member_factor: int = 2  # membership news is sent that many times more often
    record_factor: int = 3  # and endpoint records that many times
    gossip_interval: int = 2  # ticks between gossip rounds
    gossip_fanout: int = 3  # members a gossip round sends to
    gossip_to_dead: int = 300  # ticks a dead member still gets gossip (so it can refute)
    push_pull_interval: int = 150  # ticks between full-state exchanges (anti-entropy)
    reconnect_interval: int = 100  # ticks between push-pulls with a dead member (healing)
    dead_reap: int = 36_000  # ticks after which a dead member is forgotten
    tombstone_ttl: int = 3000  # ticks a deleted endpoint's tombstone is kept
    reconcile_grace: int = 50  # an entry younger than this survives a reconcile
    max_packet: int = 1400  # bytes of an encoded packet before encryption

    def __post_init__(self) -> None:
        for name in (
            "probe_interval",
            "probe_timeout",
            "suspicion_mult",
            "suspicion_max_mult",
            "suspicion_unit",
            "awareness_max",
            "retransmit_mult",
            "member_factor",
            "record_factor",
            "gossip_interval",
            "gossip_fanout",
            "push_pull_interval",
            "reconnect_interval",
            "dead_reap",
            "tombstone_ttl",
        ):
            if getattr(self, name) < 1:
                raise InvalidArgument(f"gossip {name} must be at least 1")
        if self.probe_timeout >= self.probe_interval:
            raise InvalidArgument("gossip probe_timeout must be shorter than probe_interval")
        if self.indirect_checks < 0 or self.reconcile_grace < 0 or self.gossip_to_dead < 0:
            raise InvalidArgument("gossip counts must not be negative")
        if self.max_packet < 512:
            raise InvalidArgument("gossip max_packet must be at least 512 bytes")

    def push_pull_every(self, n: int) -> int:
        """Push-pull interval for `n` members: slower past 32 so the load stays flat."""
        if n <= 32:
            return self.push_pull_interval
        return self.push_pull_interval * (math.ceil(math.log2(n) - math.log2(32)) + 1)


def suspicion_bounds(config: GossipConfig, n: int) -> tuple[int, int]:
    """(min, max) suspicion timeout in ticks for a cluster of `n` members."""
    scale = max(1.0, math.log10(max(1, n)))
    low = math.ceil(config.suspicion_mult * scale * config.suspicion_unit)
    return low, low * config.suspicion_max_mult


def retransmit_limit(config: GossipConfig, n: int) -> int:
    return config.retransmit_mult * math.ceil(math.log10(n + 1))
