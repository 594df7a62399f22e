"""Seeded simulations of the gossiped endpoint table: convergence under loss, a dead
node's entries gone everywhere, reconcile against the managers, restarts, partitions."""

from __future__ import annotations

from random import Random

import pytest

from shoal.gossip.config import suspicion_bounds
from shoal.gossip.core import Swim
from shoal.gossip.endpoints import EndpointEntry, PublishedPort
from shoal.gossip.members import MemberStatus
from tests.sim.gossip.cluster import Cluster, make_cluster

SEEDS = range(6)
PORTS = (PublishedPort("tcp", 8080, 80),)


def entry(core: Swim, task: str, ready: bool = True) -> EndpointEntry:
    return EndpointEntry("svc", task, core.node_id, f"198.19.{len(task)}.{ord(task[-1])}",
                         ready, PORTS)


def owners_truth(cluster: Cluster) -> frozenset[EndpointEntry]:
    """What every node should hold: each running owner's own entries."""
    return frozenset(
        e for c in cluster.running() for e in c.endpoints.entries() if e.node_id == c.node_id
    )


def agreed(cluster: Cluster) -> bool:
    truth = owners_truth(cluster)
    return all(s == truth for s in cluster.entry_sets())


def no_entries_of_the_dead(cluster: Cluster) -> None:
    """The invariant: no node holds an entry of a member it considers dead or gone."""
    for c in cluster.running():
        for e in c.endpoints.entries():
            if e.node_id == c.node_id:
                continue
            m = c.members.get(e.node_id)
            assert m is not None and m.status.live, (
                f"{c.node_id} holds {e.task_id} of {e.node_id}, which it sees as "
                f"{None if m is None else m.status.value}"
            )


def run_checked(cluster: Cluster, ticks: int, until: object = None) -> int:
    for i in range(ticks):
        if callable(until) and until():
            return i
        cluster.net.step()
        no_entries_of_the_dead(cluster)
    return ticks


def settle(cluster: Cluster) -> None:
    """Wait for agreement: broadcasts usually bring it, a push-pull period at the latest."""
    run_checked(cluster, cluster.config.push_pull_interval + 50, lambda: agreed(cluster))
    assert agreed(cluster)


@pytest.mark.parametrize("n", [5, 12, 20])
@pytest.mark.parametrize("seed", SEEDS)
def test_random_changes_converge_everywhere_under_loss(n: int, seed: int) -> None:
    cluster = make_cluster(n, seed, loss=0.05, delay=(0, 2))
    rng = Random(seed)
    for _ in range(60):
        owner = rng.choice(cluster.cores)
        task = f"t{rng.randrange(20)}-{owner.node_id}"
        if rng.random() < 0.3:
            owner.endpoints.remove_local(task)
        else:
            owner.endpoints.set_local(entry(owner, task, ready=rng.random() < 0.8))
        run_checked(cluster, rng.randrange(0, 6))
    assert owners_truth(cluster)
    # broadcasts carry most of it; push-pull (every 300 ticks) repairs what loss ate
    took = run_checked(cluster, 2 * cluster.config.push_pull_interval + 100,
                       lambda: agreed(cluster))
    assert agreed(cluster), f"seed {seed}: tables differ after {took} ticks"


@pytest.mark.parametrize("seed", SEEDS)
def test_a_dead_nodes_entries_vanish_everywhere(seed: int) -> None:
    cluster = make_cluster(8, seed, loss=0.02)
    victim = cluster.cores[5]
    for t in ("a", "b", "c"):
        victim.endpoints.set_local(entry(victim, f"{t}-{victim.node_id}"))
    settle(cluster)
    assert all(len(s) == 3 for s in cluster.entry_sets())
    cluster.net.crash(victim.addr)
    run_checked(cluster, 1000, lambda: all(not s for s in cluster.entry_sets()))
    assert all(not s for s in cluster.entry_sets())
    assert cluster.all_see(victim.node_id, MemberStatus.DEAD)


@pytest.mark.parametrize("seed", range(20))
def test_a_silent_nodes_entries_stop_being_ready_long_before_it_is_dead(seed: int) -> None:
    """Issue 13: the mesh stops routing to a powered-off node within ~2 s (20 ticks of
    100 ms at 5 nodes): its entries read not ready once it is suspect, dead comes later."""
    cluster = make_cluster(5, seed, loss=0.02)
    victim, other = cluster.cores[4], cluster.cores[0]
    victim.endpoints.set_local(entry(victim, f"a-{victim.node_id}"))
    other.endpoints.set_local(entry(other, f"b-{other.node_id}"))  # the service lives on
    settle(cluster)
    cluster.net.crash(victim.addr)

    def victims(ready: bool) -> list[object]:
        return [e for c in cluster.running() for e in c.endpoints.entries()
                if e.node_id == victim.node_id and e.ready == ready]

    took = run_checked(cluster, 20, lambda: not victims(True))
    assert not victims(True), f"seed {seed}: still ready somewhere after {took} ticks"
    assert victims(False)  # not ready, not yet removed: the suspicion runs on
    low, _ = suspicion_bounds(cluster.config, 5)
    run_checked(cluster, 6 * low, lambda: not victims(False))
    assert not victims(False) and cluster.all_see(victim.node_id, MemberStatus.DEAD)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_leaving_nodes_entries_vanish_within_a_few_rounds(seed: int) -> None:
    cluster = make_cluster(8, seed)
    leaver = cluster.cores[2]
    leaver.endpoints.set_local(entry(leaver, "x"))
    settle(cluster)
    leaver.leave()
    took = run_checked(cluster, 100, lambda: all(
        not s for c, s in zip(cluster.running(), cluster.entry_sets(), strict=True)
        if c is not leaver))
    assert took < 30
    assert cluster.all_see(leaver.node_id, MemberStatus.LEFT)


@pytest.mark.parametrize("seed", SEEDS)
def test_reconcile_removes_what_the_managers_do_not_know_for_good(seed: int) -> None:
    cluster = make_cluster(6, seed, loss=0.02)
    zombie = cluster.cores[4]  # still gossips a task the managers moved elsewhere
    keeper = cluster.cores[1]
    zombie.endpoints.set_local(entry(zombie, "stale"))
    keeper.endpoints.set_local(entry(keeper, "good"))
    settle(cluster)
    run_checked(cluster, cluster.config.reconcile_grace)
    authoritative = {(keeper.node_id, "good")}
    for c in cluster.cores:
        if c is not zombie:  # the zombie's agent never hears from the managers
            assert c.reconcile(authoritative) == 1
    # two anti-entropy periods later the zombie's record has been offered again and again
    run_checked(cluster, 2 * cluster.config.push_pull_interval + 50)
    for c in cluster.cores:
        if c is not zombie:
            assert [e.task_id for e in c.endpoints.entries()] == ["good"]
    # once the zombie reconciles too, its tombstone wins everywhere
    zombie.reconcile(authoritative)
    run_checked(cluster, 200)
    assert all([e.task_id for e in c.endpoints.entries()] == ["good"] for c in cluster.cores)


@pytest.mark.parametrize("seed", SEEDS)
def test_entries_younger_than_the_grace_survive_a_reconcile(seed: int) -> None:
    cluster = make_cluster(4, seed)
    owner = cluster.cores[1]
    owner.endpoints.set_local(entry(owner, "fresh"))
    run_checked(cluster, 5)
    assert all(c.reconcile(set()) == 0 for c in cluster.cores)
    run_checked(cluster, 100, lambda: agreed(cluster))
    assert all(len(s) == 1 for s in cluster.entry_sets())


@pytest.mark.parametrize("seed", SEEDS)
def test_a_restarted_owner_withdraws_entries_of_its_former_life(seed: int) -> None:
    cluster = make_cluster(6, seed)
    old = cluster.cores[3]
    for t in ("kept", "gone"):
        old.endpoints.set_local(entry(old, t))
    settle(cluster)
    cluster.net.crash(old.addr)
    run_checked(cluster, 5)
    # back before anyone noticed, with a fresh table: its agent re-adopts only "kept"
    new = Swim(old.node_id, old.addr, Random(seed + 7), cluster.config)
    cluster.cores[3] = new
    cluster.net.add(new)
    new.endpoints.set_local(entry(new, "kept"))
    new.join([cluster.cores[0].addr])
    run_checked(cluster, 3 * cluster.config.push_pull_interval, lambda: agreed(cluster))
    assert all({e.task_id for e in s} == {"kept"} for s in cluster.entry_sets())


@pytest.mark.parametrize("seed", SEEDS)
def test_a_partitioned_nodes_entries_come_back_after_healing(seed: int) -> None:
    cluster = make_cluster(6, seed)
    lone = cluster.cores[2]
    lone.endpoints.set_local(entry(lone, "l"))
    cluster.cores[0].endpoints.set_local(entry(cluster.cores[0], "m"))
    settle(cluster)
    cluster.net.partition({c.addr for c in cluster.cores if c is not lone}, {lone.addr})
    run_checked(cluster, 1500, lambda: cluster.all_see(lone.node_id, MemberStatus.DEAD))
    assert all({e.task_id for e in c.endpoints.entries()} == {"m"}
               for c in cluster.cores if c is not lone)
    cluster.net.heal()
    run_checked(cluster, 4 * cluster.config.reconnect_interval + 400,
                lambda: cluster.converged() and agreed(cluster))
    assert cluster.converged() and agreed(cluster)
    assert all({e.task_id for e in s} == {"l", "m"} for s in cluster.entry_sets())
