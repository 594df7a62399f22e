"""Membership through the driver: a manager joins empty as a learner, catches up, is
promoted; the leader asked to remove itself hands leadership over first; partitions."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.manager.controlapi.services import create_service
from shoal.manager.raft import NotLeader
from shoal.raft import ConfState
from tests.unit.manager.raft.cluster import Cluster, services, spec


async def test_join_as_learner_promote_then_the_leader_leaves(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 3, seed=4)
    c.start_all()
    try:
        leader = await c.wait_leader()
        for i in range(5):
            await create_service(leader.store, spec(f"pre{i}"))
        c.add_manager(4)
        c.start(4, bootstrap=False)  # empty: it learns everything from the leader
        await leader.node.add_learner(4, b"198.18.0.14:2377")
        assert leader.node.conf_state == ConfState(voters=(1, 2, 3), learners=(4,))
        await c.wait_converged()
        assert sorted(services(c[4])) == [f"pre{i}" for i in range(5)]
        await leader.node.promote(4)
        await c.until(
            lambda: all(m.node.conf_state.voters == (1, 2, 3, 4) for m in c.up()),
            5,
            "every member to see 4 voters",
        )
        # The leader leaves: it hands leadership to another voter first.
        with pytest.raises(NotLeader) as err:
            await leader.node.remove(leader.id)
        successor = c[err.value.leader]
        assert successor is not leader and successor.node.is_leader
        await c.until(lambda: successor.node.leader_ready, 5, "the successor to be ready")
        await successor.node.remove(leader.id)
        await c.stop(leader.id)
        remaining = tuple(sorted({1, 2, 3, 4} - {leader.id}))
        await c.until(
            lambda: all(m.node.conf_state.voters == remaining for m in c.up()),
            5,
            "the departure to be applied everywhere",
        )
        await create_service(successor.store, spec("post"))
        await c.wait_converged()
        assert all("post" in services(m) for m in c.up())
    finally:
        await c.close()


async def test_partitioned_leader_steps_down_and_the_majority_goes_on(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 5, seed=5)
    c.start_all()
    try:
        old = await c.wait_leader()
        await create_service(old.store, spec("before"))
        minority = {old.id, next(i for i in c.managers if i != old.id)}
        majority = set(c.managers) - minority
        c.net.partition(minority, majority)
        # check-quorum: the cut-off leader steps down; the majority elects a new one.
        await c.until(lambda: not old.node.is_leader, 5, "the old leader to step down")
        await c.until(lambda: any(c[i].node.leader_ready for i in majority), 5, "a majority leader")
        new = next(c[i] for i in majority if c[i].node.leader_ready)
        await create_service(new.store, spec("during"))
        with pytest.raises(NotLeader):
            await create_service(old.store, spec("lost"))
        c.net.heal()
        await c.wait_converged()
        for m in c.up():
            assert sorted(services(m)) == ["before", "during"]
    finally:
        await c.close()


async def test_the_leader_sees_which_managers_are_reachable(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 3, seed=9)
    c.start_all()
    try:
        leader = await c.wait_leader()
        others = sorted(i for i in c.managers if i != leader.id)
        await c.until(
            lambda: leader.node.reachability() == dict.fromkeys(others, True), 5, "all reachable"
        )
        await c.crash(others[0])
        await c.until(
            lambda: leader.node.reachability() == {others[0]: False, others[1]: True},
            5,
            "the crashed one to be unreachable",
        )
    finally:
        await c.close()
