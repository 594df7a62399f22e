"""In-process clusters of managers (real Store, real SQLite storage, InMemoryNetwork):
election, replication through the real control API, failover, restart from disk,
snapshots for a far-behind follower, linearizable reads, leadership callbacks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from shoal.errors import Ambiguous, Unavailable
from shoal.manager.controlapi.services import create_service, update_service
from shoal.manager.raft import NotLeader
from tests.unit.manager.raft.cluster import FAST, Cluster, last_index_on_disk, services, spec


@pytest.fixture
async def cluster3(tmp_path: Path):  # type: ignore[no-untyped-def]
    c = Cluster(tmp_path, 3, seed=1)
    c.start_all()
    yield c
    await c.close()


async def test_three_managers_replicate_control_api_writes_in_order(cluster3: Cluster) -> None:
    c = cluster3
    leader = await c.wait_leader()
    await c.until(lambda: leader.leadership == [True], 5, "the leadership callback")
    created = []
    for i in range(10):
        created.append(await create_service(leader.store, spec(f"web{i}")))
    svc = services(leader)["web3"]
    await update_service(leader.store, svc.id, svc.version.index, spec("web3", image="nginx"))
    await c.wait_converged()
    # each replica's recorder drains its events in its own task
    lengths = lambda: {len(m.history) for m in c.managers.values()} == {11}  # noqa: E731
    await c.until(lengths, 5, "every replica to record its 11 changes")
    for m in c.managers.values():
        got = services(m)
        assert sorted(got) == [f"web{i}" for i in range(10)]
        assert got["web3"].spec.task_template.container_spec.image == "nginx"
        assert m.history == leader.history  # same changes, same order, same Version.Index
    assert [v for _, _, v in leader.history] == list(range(1, 12))


async def test_a_follower_refuses_writes_naming_the_leader_and_reads_linearizably(
    cluster3: Cluster,
) -> None:
    """Asked within one term: a loaded machine can stall the loop past the 200 ms election
    timeout and move leadership mid-attempt, which proves nothing either way; such an
    attempt is run again (under new names) in the next term."""
    c = cluster3
    for attempt in range(5):
        leader = await c.wait_leader()
        term = leader.node.term
        follower = next(m for m in c.up() if m is not leader)
        try:
            await create_service(follower.store, spec(f"nope{attempt}"))
            refused: NotLeader | None = None
        except NotLeader as e:
            refused = e
        try:
            await create_service(leader.store, spec(f"fresh{attempt}"))
            assert follower.log is not None
            # ReadIndex: once it returns, the follower's copy holds every acknowledged write.
            await follower.log.barrier()
        except (Unavailable, Ambiguous):  # NotLeader, a dropped proposal or read
            pass
        if {m.node.term for m in c.up()} != {term} or not leader.node.is_leader:
            continue  # leadership moved during the attempt
        assert refused is not None, "the follower accepted a write"
        assert refused.leader == leader.id
        assert f"fresh{attempt}" in services(follower)
        assert f"nope{attempt}" not in services(leader)
        return
    raise AssertionError(f"leadership moved in each of 5 attempts: {c}")


@pytest.mark.parametrize("how", ["stop", "crash"])
async def test_leader_loss_new_leader_then_old_one_catches_up_from_disk(
    tmp_path: Path, how: str
) -> None:
    c = Cluster(tmp_path, 3, seed=2)
    c.start_all()
    try:
        old = await c.wait_leader()
        for i in range(5):
            await create_service(old.store, spec(f"a{i}"))
        await (c.stop(old.id) if how == "stop" else c.crash(old.id))
        if how == "stop":
            assert old.leadership == [True, False]
        new = await c.wait_leader()
        assert new is not old
        for i in range(5):
            await create_service(new.store, spec(f"b{i}"))
        c.start(old.id)
        await c.wait_converged()
        assert len(services(c[old.id])) == 10
        assert c[old.id].state() == new.state()
    finally:
        await c.close()


async def test_a_follower_far_behind_gets_a_snapshot(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 3, seed=3, config=replace(FAST, snapshot_every=20, keep_tail=5))
    c.start_all()
    try:
        leader = await c.wait_leader()
        lagging = next(m for m in c.up() if m is not leader)
        await c.stop(lagging.id)
        for i in range(60):
            await create_service(leader.store, spec(f"s{i}"))
        assert leader.storage is not None
        behind_by = leader.storage.first_index() - 1
        old_last = last_index_on_disk(lagging)
        assert behind_by > old_last, "the entries it lacks must be compacted away"
        c.start(lagging.id)
        await c.wait_converged()
        assert lagging.storage is not None
        assert lagging.storage.snapshot().index > old_last
        assert len(services(lagging)) == 60
        # and it keeps following with entries afterwards
        await create_service(leader.store, spec("after"))
        await c.wait_converged()
        assert "after" in services(lagging)
    finally:
        await c.close()
