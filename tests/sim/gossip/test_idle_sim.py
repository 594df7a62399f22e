"""The core's `next_due()` promise, which lets the driver sleep between due ticks (issue 13).

`SimNetwork` checks the promise at every tick of every simulation (a tick before the named
one has no outputs and no events); these tests check that the check can fail, and how many
ticks an idle cluster lets its drivers sleep through.
"""

from __future__ import annotations

from random import Random

import pytest

from shoal.gossip.config import GossipConfig
from shoal.gossip.core import Swim
from shoal.gossip.members import MemberStatus
from shoal.gossip.simnet import SimNetwork
from tests.sim.gossip.cluster import make_cluster


class _Oversleeper(Swim):
    def next_due(self) -> int:
        return self.now + 1000  # claims nothing is due for a long time


def test_a_core_that_hides_a_due_tick_fails_the_simulation() -> None:
    net = SimNetwork(Random(1))
    cores = [_Oversleeper(f"n{i}", f"10.0.0.{i + 1}:7946", Random(i)) for i in range(3)]
    for core in cores:
        net.add(core)
    for core in cores[1:]:
        core.join([cores[0].addr])
    with pytest.raises(AssertionError, match="before its next_due"):
        net.run(100)


@pytest.mark.parametrize("seed", range(4))
def test_an_idle_cluster_is_due_about_once_a_probe_period(seed: int) -> None:
    # LAN delays (a round trip within the probe timeout: no ping-reqs)
    cluster = make_cluster(5, seed, delay=(0, 1))
    net = cluster.net
    net.run(600, lambda: all(c.pending_broadcasts() == 0 for c in cluster.cores))
    ticks, quiet, packets = net.stats.core_ticks, net.stats.quiet_ticks, net.stats.packets
    net.run(1500)
    awake = (net.stats.core_ticks - ticks) - (net.stats.quiet_ticks - quiet)
    per_core = awake / len(cluster.cores)
    cfg = cluster.config
    # one probe per probe period; push-pulls and reconnects add a few
    expected = 1500 / cfg.probe_interval
    assert per_core <= expected * 1.1, f"seed {seed}: {per_core} wake-ups per core"
    assert per_core >= expected * 0.9  # and the probes are all still there
    # an idle probe period is a ping and an ack each way, nothing else
    sent = (net.stats.packets - packets) / len(cluster.cores)
    assert sent <= 2 * expected * 1.05
    assert cluster.converged()


@pytest.mark.parametrize("seed", range(4))
def test_a_crash_in_an_idle_cluster_wakes_the_deadlines(seed: int) -> None:
    """A silent target makes the probe's ping-req and end, and then the suspicion's
    deadline, due ticks: the victim is still suspected and declared dead, on time."""
    cfg = GossipConfig()
    cluster = make_cluster(5, seed, config=cfg)
    net = cluster.net
    net.run(600, lambda: all(c.pending_broadcasts() == 0 for c in cluster.cores))
    victim = cluster.cores[1 + seed % 4]
    net.crash(victim.addr)
    took = net.run(2000, lambda: cluster.all_see(victim.node_id, MemberStatus.DEAD))
    assert took < 2000
    suspected = [t for t, _, ev in net.events
                 if ev.node_id == victim.node_id and ev.status is MemberStatus.SUSPECT]
    assert suspected and suspected[0] - (net.now - took) <= 2 * 4 * cfg.probe_interval
