"""RaftNode.reconfigure: new timings and snapshot settings on running managers.

Each failover test starts with timings under which a new leader could not be elected
within the test's deadline (a 20 s minimum election timeout), changes them on the running
nodes, then crashes the leader: a new leader within a few seconds shows the change took
effect without a restart."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from shoal.errors import InvalidArgument
from shoal.manager.controlapi.services import create_service
from shoal.manager.raft import RaftNodeConfig
from tests.unit.manager.raft.cluster import FAST, Cluster, spec

# Elections after 1000-2000 ticks of 20 ms: 20-40 s.
SLOW_ELECTIONS = replace(FAST, election_tick=1000)
# Ticks of 10 s: elections after 100-200 s; a ticker asleep for 10 s must start over.
SLOW_TICKS = replace(FAST, tick_interval=10.0)


async def _started(tmp_path: Path, config: RaftNodeConfig) -> Cluster:
    c = Cluster(tmp_path, 3, seed=5, config=config)
    c.start_all()
    c[1].node.campaign()  # nobody would time out in time
    await c.wait_leader(5)
    return c


async def _new_leader_after_crash(c: Cluster) -> None:
    old = await c.wait_leader(5)
    await c.crash(old.id)
    new = await c.wait_leader(5)
    assert new is not old
    await create_service(new.store, spec("after-failover"))


async def test_a_shorter_election_tick_takes_effect_live(tmp_path: Path) -> None:
    c = await _started(tmp_path, SLOW_ELECTIONS)
    try:
        for m in c.up():
            m.node.reconfigure(replace(m.node.config, election_tick=10))
        assert all(m.node.config.election_timeout == pytest.approx(0.2) for m in c.up())
        await _new_leader_after_crash(c)
    finally:
        await c.close()


async def test_a_shorter_tick_interval_takes_effect_live(tmp_path: Path) -> None:
    c = await _started(tmp_path, SLOW_TICKS)
    try:
        for m in c.up():  # their tickers sleep for 10 s: they start over with 20 ms
            m.node.reconfigure(replace(m.node.config, tick_interval=0.02))
        await _new_leader_after_crash(c)
    finally:
        await c.close()


async def test_heartbeat_and_election_ticks_change_together(tmp_path: Path) -> None:
    c = await _started(tmp_path, FAST)
    try:
        for m in c.up():
            m.node.reconfigure(replace(m.node.config, election_tick=8, heartbeat_tick=4))
        leader = await c.wait_leader(5)
        await create_service(leader.store, spec("still-leading"))
        await _new_leader_after_crash(c)
    finally:
        await c.close()


async def test_snapshot_interval_changes_live(tmp_path: Path) -> None:
    c = await _started(tmp_path, FAST)
    try:
        leader = await c.wait_leader(5)
        leader.node.reconfigure(replace(leader.node.config, snapshot_every=5, keep_tail=2))
        for i in range(8):
            await create_service(leader.store, spec(f"s{i}"))
        assert leader.storage is not None
        assert leader.storage.snapshot().index >= 5  # with the default 10,000: none yet
    finally:
        await c.close()


@pytest.mark.parametrize(
    "change",
    [
        {"election_tick": 1, "heartbeat_tick": 1},
        {"heartbeat_tick": 0},
        {"tick_interval": 0.0},
        {"snapshot_every": 0},
        {"max_inflight": 8},  # not a live setting
        {"max_outbound": 10},
    ],
)
async def test_bad_reconfiguration_is_refused_and_changes_nothing(
    tmp_path: Path, change: dict[str, object]
) -> None:
    c = await _started(tmp_path, FAST)
    try:
        node = c[1].node
        before = node.config
        with pytest.raises(InvalidArgument):
            node.reconfigure(replace(before, **change))  # type: ignore[arg-type]
        assert node.config is before
        await _new_leader_after_crash(c)  # still elects with the old timings
    finally:
        await c.close()
