"""`swarm update` of the Raft timings reaches every manager's Raft member live.

Three in-process managers (loopback 2377, 20 ms ticks) start with elections after
1000-2000 ticks (20-40 s). An update through a follower brings them to 10 ticks; when the
leader then stops, a new one is elected within seconds: the new election tick took effect
on the survivors without a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.polling import eventually
from tests.unit.cluster.nodes import TestNode, web_spec

MS = 1_000_000


@pytest.fixture
async def slow_managers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[list[TestNode]]:
    monkeypatch.setenv("SHOAL_RAFT_TICK_MS", "20")  # the founding daemon's default tick
    nodes = [TestNode(tmp_path / f"m{i}", f"m{i}") for i in (1, 2, 3)]
    try:
        for n in nodes:
            await n.start()
        await nodes[0].call(
            "POST", "/swarm/init",
            {"AdvertiseAddr": "127.0.0.1", "DefaultAddrPool": ["198.19.0.0/16"],
             "SubnetSize": 24, "Spec": {"Raft": {"ElectionTick": 1000}}},
        )  # fmt: skip
        token = (await nodes[0].tokens())["Manager"]
        for n in nodes[1:]:
            await n.join(nodes[0], token=token)
        await eventually(lambda: _voters(nodes[0]) == 3, timeout=20)
        yield nodes
    finally:
        for n in nodes:
            await n.stop()


def _voters(node: TestNode) -> int:
    raft = node.daemon.raft
    return len(raft.node.conf_state.voters) if raft is not None else 0


def _timing(node: TestNode) -> tuple[float, int, int]:
    raft = node.daemon.raft
    assert raft is not None
    c = raft.node.config
    return c.tick_interval, c.election_tick, c.heartbeat_tick


def _leader(nodes: list[TestNode]) -> TestNode | None:
    leaders = [n for n in nodes if n.daemon.raft is not None and n.daemon.raft.is_leader]
    return leaders[0] if len(leaders) == 1 else None


async def _update_raft(node: TestNode, **raft: int) -> None:
    current: dict[str, Any] = await node.call("GET", "/swarm")
    spec = current["Spec"]
    spec["Raft"].update(raft)
    await node.call("POST", "/swarm/update", spec, version=str(current["Version"]["Index"]))


async def test_a_changed_election_tick_takes_effect_live(slow_managers: list[TestNode]) -> None:
    nodes = slow_managers
    swarm = await nodes[1].call("GET", "/swarm")
    assert swarm["Spec"]["Raft"]["TickInterval"] == 20 * MS  # stored at init, shown by the API
    assert all(_timing(n) == (0.02, 1000, 1) for n in nodes)

    leader = await eventually(lambda: _leader(nodes), timeout=10)
    follower = next(n for n in nodes if n is not leader)
    await _update_raft(follower, ElectionTick=10)  # forwarded to the leader
    await eventually(lambda: all(_timing(n) == (0.02, 10, 1) for n in nodes), timeout=5)
    info = await follower.call("GET", "/info")
    assert info["Swarm"]["Cluster"]["Spec"]["Raft"]["ElectionTick"] == 10

    nodes.remove(leader)  # stopped here, not again by the fixture
    await leader.stop()
    survivors = nodes
    # 20-40 s with the old election tick; 0.2-0.4 s (plus pre-vote) with the new one
    await eventually(lambda: _leader(survivors), timeout=5)
    await survivors[0].call("POST", "/services/create", web_spec(1), expect=201)


async def test_bad_timings_are_refused_and_change_nothing(
    slow_managers: list[TestNode],
) -> None:
    nodes = slow_managers
    before = await nodes[1].call("GET", "/swarm")
    for raft in ({"TickInterval": 5 * MS}, {"ElectionTick": 3, "HeartbeatTick": 2}):
        spec = dict(before["Spec"], Raft=dict(before["Spec"]["Raft"], **raft))
        version = str(before["Version"]["Index"])
        answer = await nodes[1].call("POST", "/swarm/update", spec, expect=400, version=version)
        assert "raft:" in answer["message"]
    assert await nodes[2].call("GET", "/swarm") == before
    assert all(_timing(n) == (0.02, 1000, 1) for n in nodes)


async def test_init_with_bad_timings_is_refused_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOAL_RAFT_TICK_MS", "20")
    node = TestNode(tmp_path / "m1", "m1")
    body: dict[str, Any] = {"AdvertiseAddr": "127.0.0.1", "DefaultAddrPool": ["198.19.0.0/16"]}
    try:
        await node.start()
        bad = dict(body, Spec={"Raft": {"ElectionTick": 3, "HeartbeatTick": 2}})
        answer = await node.call("POST", "/swarm/init", bad, expect=400)
        assert "ElectionTick (3) must be at least twice HeartbeatTick (2)" in answer["message"]
        assert (await node.call("GET", "/info"))["Swarm"]["LocalNodeState"] == "inactive"
        good = dict(body, Spec={"Raft": {"TickInterval": 50 * MS}})
        await node.call("POST", "/swarm/init", good)
        assert _timing(node) == (0.05, 10, 1)  # the spec's tick, not SHOAL_RAFT_TICK_MS
    finally:
        await node.stop()
