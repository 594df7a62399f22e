"""Builds seeded gossip clusters on the simulated network and states what they must meet."""

from __future__ import annotations

import math
from dataclasses import dataclass
from random import Random

from shoal.gossip.config import GossipConfig, suspicion_bounds
from shoal.gossip.core import Swim
from shoal.gossip.members import MemberStatus
from shoal.gossip.simnet import SimNetwork


@dataclass
class Cluster:
    net: SimNetwork
    cores: list[Swim]
    config: GossipConfig

    def running(self) -> list[Swim]:
        return self.net.running()

    def converged(self) -> bool:
        """Every running core sees exactly the running cores as alive, and nobody else live."""
        ids = {c.node_id for c in self.running()}
        for c in self.running():
            live = {m.node_id for m in c.members.all() if m.status is MemberStatus.ALIVE}
            others = {m.node_id for m in c.members.live()}
            if live | {c.node_id} != ids or others | {c.node_id} != ids:
                return False
        return True

    def all_see(self, node_id: str, status: MemberStatus) -> bool:
        for c in self.running():
            if c.node_id == node_id:
                continue
            m = c.members.get(node_id)
            if m is None or m.status is not status:
                return False
        return True

    def entry_sets(self) -> list[frozenset[object]]:
        return [frozenset(c.endpoints.entries()) for c in self.running()]


def make_cluster(
    n: int,
    seed: int,
    loss: float = 0.0,
    delay: tuple[int, int] = (0, 2),
    config: GossipConfig | None = None,
    settle: int = 600,
) -> Cluster:
    """`n` cores that all joined the first one, run until they agree (or `settle` ticks)."""
    cfg = config or GossipConfig()
    net = SimNetwork(Random(seed), loss=loss, delay=delay)
    cores = [Swim(f"node{i:02d}", f"10.0.0.{i + 1}:7946", Random(seed * 1000 + i), cfg)
             for i in range(n)]
    for core in cores:
        net.add(core)
    for core in cores[1:]:
        core.join([cores[0].addr])
    cluster = Cluster(net, cores, cfg)
    net.run(settle, cluster.converged)
    assert cluster.converged(), f"seed {seed}: {n} members did not converge in {settle} ticks"
    return cluster


def detection_bound(config: GossipConfig, n: int) -> int:
    """Ticks within which a crashed member is dead for every other member (no loss).

    Every live member probes it within 2 (n - 1) + 1 probe periods (shuffled round-robin),
    so the first suspicion starts by then; its holder declares the member dead at most
    `max` suspicion ticks later (no confirmations needed for that); the dead message then
    reaches everyone within a few gossip rounds, bounded here by log2(n) + 4 rounds of
    `gossip_interval` plus the network delay.
    """
    periods = (2 * (n - 1) + 1) * config.probe_interval + config.probe_timeout
    _, high = suspicion_bounds(config, n)
    spread = (math.ceil(math.log2(n)) + 4) * (config.gossip_interval + 2)
    return periods + high + spread
