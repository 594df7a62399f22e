"""Three managers in one process, joined with the manager token over loopback 2377: Raft
replicates the store, writes on followers are forwarded, reads are current everywhere."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shoal.manager.issuer import manager_addrs
from shoal.manager.raft.ids import raft_id
from shoal.manager.role import ManagerRole
from shoal.node.worker import WorkerRole
from tests.polling import eventually
from tests.unit.cluster.nodes import TestNode, V, web_spec


@pytest.fixture
def fast_raft(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_RAFT_TICK_MS", "20")  # elections in 0.2-0.4 s


@pytest.fixture
async def managers(tmp_path: Path, fast_raft: None) -> AsyncIterator[list[TestNode]]:
    nodes = [TestNode(tmp_path / f"m{i}", f"m{i}") for i in (1, 2, 3)]
    try:
        for n in nodes:
            await n.start()
        await nodes[0].init()
        token = (await nodes[0].tokens())["Manager"]
        for n in nodes[1:]:
            await n.join(nodes[0], token=token)
        await eventually(lambda: _voters(nodes[0]) == 3, timeout=20)
        await eventually(lambda: _all_ready(nodes[0]), timeout=10)
        yield nodes
    finally:
        for n in nodes:
            await n.stop()


async def _all_ready(node: TestNode) -> bool:
    nodes = await node.nodes()
    return len(nodes) == 3 and all(n["Status"]["State"] == "ready" for n in nodes.values())


def _voters(node: TestNode) -> int:
    raft = node.daemon.raft
    return len(raft.node.conf_state.voters) if raft is not None else 0


def _leader(nodes: list[TestNode]) -> TestNode | None:
    leaders = [n for n in nodes if n.daemon.raft is not None and n.daemon.raft.is_leader]
    return leaders[0] if len(leaders) == 1 else None


async def _manager_view(node: TestNode) -> dict[str, Any]:
    return {h: n["ManagerStatus"] for h, n in (await node.nodes()).items()}


async def test_managers_join_share_one_state_and_forward_writes(
    managers: list[TestNode],
) -> None:
    m1, m2, m3 = managers
    assert all(n.daemon.is_manager for n in managers)
    # every manager holds the root CA key and a manager certificate
    for n in managers:
        assert n.daemon.root_ca is not None and n.daemon.tls is not None
        assert n.daemon.tls.identity.role == "manager"
    # node ls from every manager: three managers, one leader, all reachable
    for n in managers:
        view = await eventually(
            lambda n=n: _all_reachable(n), timeout=10  # type: ignore[misc]
        )
        assert sum(1 for s in view.values() if s.get("Leader")) == 1
        assert view["m1"].get("Leader") is True
        assert {h: s["Addr"] for h, s in view.items()} == {
            "m1": m1.addr, "m2": m2.addr, "m3": m3.addr
        }
    # a write on a follower is forwarded to the leader and answered as if local
    sid = (await m2.call("POST", "/services/create", web_spec(1), expect=201))["ID"]
    # and is visible at once on the other follower (ReadIndex barrier before the read)
    service = await m3.call("GET", f"/services/{sid}")
    assert service["Spec"]["Name"] == "web"
    spec = service["Spec"]
    spec["Mode"]["Replicated"]["Replicas"] = 3
    await m3.call("POST", f"/services/{sid}/update", spec,
                  version=str(service["Version"]["Index"]))
    again = await m2.call("GET", f"/services/{sid}")
    assert again["Spec"]["Mode"]["Replicated"]["Replicas"] == 3
    assert again["Version"]["Index"] > service["Version"]["Index"]
    # the tasks run on all three managers (followers' agents report to the leader)
    async def spread() -> bool:
        running = [t for t in await m1.tasks(sid) if t["Status"]["State"] == "running"]
        return len(running) == 3 and len({t["NodeID"] for t in running}) == 3

    await eventually(spread, timeout=20)
    # a stale version is refused through a follower too
    body = await m2.call("POST", f"/services/{sid}/update", spec, expect=409,
                         version=str(service["Version"]["Index"]))
    assert "out of sequence" in body["message"]


async def _all_reachable(node: TestNode) -> dict[str, Any] | None:
    view = await _manager_view(node)
    ok = len(view) == 3 and all(s and s["Reachability"] == "reachable" for s in view.values())
    return view if ok else None


async def test_the_leader_fails_another_takes_over_and_it_catches_up(
    managers: list[TestNode], tmp_path: Path
) -> None:
    m1, m2, m3 = managers
    await m1.call("POST", "/services/create", web_spec(1), expect=201)
    await m1.client.close()
    await m1.daemon.shutdown()  # the leader goes away
    new = await eventually(lambda: _leader([m2, m3]), timeout=10)
    other = m3 if new is m2 else m2
    spec = web_spec(1)
    spec["Name"] = "after"
    spec["EndpointSpec"] = {}
    await other.call("POST", "/services/create", spec, expect=201)
    # m1 was the leader: node ls on the new leader says it is unreachable
    view = await eventually(
        lambda: _status_is(new, "m1", "unreachable"), timeout=10
    )
    # the managers' list handed to workers starts with the new leader
    assert new.daemon.store is not None
    await eventually(lambda: manager_addrs(new.daemon.store)[0] == new.addr)  # type: ignore[arg-type]
    assert not view["m1"].get("Leader")
    # m1 comes back on the same data root and catches up
    back = TestNode(m1.daemon.root, "m1")
    managers[0] = back
    await back.start()
    names = await eventually(lambda: _names_if(back, {"web", "after"}), timeout=15)
    assert names == {"web", "after"}
    assert raft_id(back.daemon.swarm.node_id) in new.daemon.raft.members  # type: ignore[union-attr]


async def _status_is(node: TestNode, host: str, reach: str) -> dict[str, Any] | None:
    view = await _manager_view(node)
    return view if view[host]["Reachability"] == reach else None


async def _names_if(node: TestNode, want: set[str]) -> set[str] | None:
    if node.daemon.raft is None:
        return None
    names = {s["Spec"]["Name"] for s in await node.call("GET", "/services")}
    return names if names == want else None


async def test_a_worker_joins_through_a_follower(managers: list[TestNode], tmp_path: Path) -> None:
    m1, m2, _ = managers
    worker = TestNode(tmp_path / "w1", "w1")
    await worker.start()
    try:
        await worker.join(m2)  # m2 follows: the join is relayed to the leader
        nodes = await m2.nodes()
        assert nodes["w1"]["Spec"]["Role"] == "worker"
        assert worker.daemon.session is not None
        await eventually(lambda: worker.daemon.session.connected.is_set())  # type: ignore[union-attr]
        # its session ends up with the leader (a follower's dispatcher refuses)
        await eventually(lambda: worker.daemon.session.connected_to == m1.addr,  # type: ignore[union-attr]
                         timeout=15)
    finally:
        await worker.stop()


async def test_removing_managers_keeps_a_quorum(managers: list[TestNode]) -> None:
    m1, m2, m3 = managers
    ids = {h: n["ID"] for h, n in (await m1.nodes()).items()}
    # m3 goes away; demoting m2 now would leave m1 + unreachable m3: refused
    await m3.client.close()
    await m3.daemon.shutdown()
    await eventually(lambda: _status_is(m1, "m3", "unreachable"), timeout=10)
    node = (await m1.nodes())["m2"]
    body = await m1.call(
        "POST", f"/nodes/{ids['m2']}/update",
        {**node["Spec"], "Role": "worker"}, expect=400, version=str(node["Version"]["Index"]),
    )
    assert "quorum" in body["message"]
    # a manager is not removed without --force; with it, the dead one is (through a follower)
    body = await m2.call("DELETE", f"/nodes/{ids['m3']}", expect=400)
    assert "must be demoted" in body["message"]
    await m2.call("DELETE", f"/nodes/{ids['m3']}", force="1")
    await eventually(lambda: _voters(m1) == 2, timeout=10)
    assert set(await m2.nodes()) == {"m1", "m2"}
    # with two managers, demoting one is refused only for the last one standing
    await m3.daemon.raft.close() if m3.daemon.raft else None  # already shut down
    view = await m2.nodes()
    body = await m2.call(
        "POST", f"/nodes/{ids['m1']}/update",
        {**view["m1"]["Spec"], "Role": "worker"},
        version=str(view["m1"]["Version"]["Index"]),
    )
    # the leader (m1) hands leadership to m2 before its Raft member is removed
    await eventually(lambda: _voters(m2) == 1 and _leader([m1, m2]) is m2, timeout=10)
    view = await m2.nodes()
    body = await m2.call(
        "POST", f"/nodes/{ids['m2']}/update",
        {**view["m2"]["Spec"], "Role": "worker"}, expect=400,
        version=str(view["m2"]["Version"]["Index"]),
    )
    assert "last manager" in body["message"]


async def test_a_manager_leaves_with_force(managers: list[TestNode]) -> None:
    m1, m2, _ = managers
    body = await m2.call("POST", "/swarm/leave", expect=503)
    assert "participating as a manager" in body["message"]
    await m2.call("POST", "/swarm/leave", force="1")
    assert m2.daemon.swarm is None
    await eventually(lambda: _voters(m1) == 2, timeout=10)
    assert set(await m1.nodes()) == {"m1", "m3"}
    # the leader itself leaves: leadership moves first, m3 goes on alone
    m3 = managers[2]
    await m1.call("POST", "/swarm/leave", force="1")
    await eventually(lambda: m3.daemon.raft is not None and m3.daemon.raft.is_leader, timeout=10)
    await eventually(lambda: _voters(m3) == 1, timeout=10)
    assert set(await m3.nodes()) == {"m3"}


async def test_force_new_cluster_recovers_a_lone_survivor(managers: list[TestNode]) -> None:
    m1, m2, m3 = managers
    await m1.call("POST", "/services/create", web_spec(1), expect=201)
    for n in (m2, m3):
        await n.client.close()
        await n.daemon.shutdown()
    await eventually(lambda: not (m1.daemon.raft and m1.daemon.raft.is_leader), timeout=10)
    body = await m1.call("POST", "/services/create", {**web_spec(1), "Name": "x",
                                                       "EndpointSpec": {}}, expect=503)
    assert "does not have a leader" in body["message"]
    await m1.call("POST", "/swarm/init", {"ForceNewCluster": True})
    assert _voters(m1) == 1
    spec = {**web_spec(1), "Name": "after", "EndpointSpec": {}}
    await m1.call("POST", "/services/create", spec, expect=201)
    names = {s["Spec"]["Name"] for s in await m1.call("GET", "/services")}
    assert names == {"web", "after"}


async def test_follower_managers_record_their_gossip_address(managers: list[TestNode]) -> None:
    nodes = await managers[0].nodes()
    for host, node in nodes.items():
        daemon = next(n.daemon for n in managers if n.daemon.hostname == host)
        assert daemon.network is not None
        assert node["GossipAddr"] == daemon.network.gossip_addr, host


async def test_promote_a_worker_and_demote_a_manager(
    managers: list[TestNode], tmp_path: Path
) -> None:
    m1, m2, m3 = managers
    worker = TestNode(tmp_path / "w1", "w1")
    await worker.start()
    try:
        await worker.join(m1)
        view = await m2.nodes()
        w1 = view["w1"]
        assert isinstance(worker.daemon.role, WorkerRole)
        worker_tasks = worker.daemon.role.background_tasks()
        await m2.call("POST", f"/nodes/{w1['ID']}/update", {**w1["Spec"], "Role": "manager"},
                      version=str(w1["Version"]["Index"]))
        # the worker notices, becomes a manager and a Raft voter
        await eventually(lambda: worker.daemon.raft is not None, timeout=15)
        await eventually(lambda: _voters(m1) == 4, timeout=15)
        # one role object at a time: the worker role stopped whole, a manager role runs
        assert isinstance(worker.daemon.role, ManagerRole)
        assert worker_tasks and all(t.done() for t in worker_tasks)
        assert not any(t.done() for t in worker.daemon.background_tasks())
        assert worker.daemon.tls is not None and worker.daemon.tls.identity.role == "manager"
        assert worker.daemon.root_ca is not None
        # demote m3: its Raft member goes, and it carries on as a worker. The leader refuses
        # while a voter has not been heard within an election timeout (0.2 s here, which a
        # loaded loop can miss): that refusal changes nothing, and a user asks again.
        demoted = m3.daemon.manager
        assert demoted is not None
        m3_addr = m3.addr
        assert m1.daemon.store is not None and m3_addr in manager_addrs(m1.daemon.store)

        async def demote() -> bool:
            node = (await worker.nodes())["m3"]  # the new manager answers node reads too
            resp = await worker.client.post(
                f"{V}/nodes/{node['ID']}/update", json={**node["Spec"], "Role": "worker"},
                params={"version": str(node["Version"]["Index"])},
            )
            text = await resp.text()
            if resp.status == 400 and "loss of quorum" in text:
                return False
            assert resp.status == 200, text
            return True

        await eventually(demote, timeout=15, what="the leader to accept the demotion")
        await eventually(lambda: m3.daemon.raft is None and m3.daemon.session is not None,
                         timeout=15)
        assert m3.daemon.swarm is not None and m3.daemon.swarm.role == "worker"
        assert isinstance(m3.daemon.role, WorkerRole) and m3.daemon.store is None
        assert demoted.cluster is None and not demoted.duties.leading
        assert not demoted.duties.reconcilers.running and demoted.background_tasks() == []
        assert m3.daemon.tls is not None and m3.daemon.tls.identity.role == "worker"
        await eventually(lambda: m3.daemon.session.connected.is_set(),  # type: ignore[union-attr]
                         timeout=15)
        assert _voters(m1) == 3
        # out of Raft, its stored manager status goes too: workers and joining nodes are no
        # longer handed its 2377 as a manager to try
        store = m1.daemon.store
        await eventually(lambda: m3_addr not in manager_addrs(store), timeout=15,
                         what="m3's manager status forgotten")
        body = await m3.call("GET", "/nodes", expect=503)
        assert "Worker nodes can't be used" in body["message"]
    finally:
        await worker.stop()
