"""The cluster mesh wired in the daemon: a manager and two workers in one process.

Gossip runs for real over loopback (encrypted with the managers' key); the overlay and
the data plane are recorders. What must hold: every node's mesh gets every node's ready
endpoints, every node's overlay gets every other node as a peer, the gossip key never
leaves the cluster through the API, and an endpoint the managers do not know is dropped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shoal import timeouts
from shoal.gossip.table import EndpointEntry
from shoal.observe.dashboard import mesh
from tests.polling import eventually
from tests.unit.cluster.nodes import TestNode, web_spec


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[list[TestNode]]:
    nodes = [TestNode(tmp_path / name, name) for name in ("m1", "w1", "w2")]
    for node in nodes:
        await node.start()
    try:
        await nodes[0].init()
        for worker in nodes[1:]:
            await worker.join(nodes[0])
        yield nodes
    finally:
        for node in nodes:
            await node.stop()


def _endpoints(node: TestNode) -> set[tuple[str, bool]]:
    last = node.plane.last
    return set() if last is None else {(e.node_id, e.ready) for e in last.endpoints}


async def test_every_node_routes_to_every_ready_task(cluster: list[TestNode]) -> None:
    manager = cluster[0]
    ids = {n.daemon.hostname: n.daemon.swarm.node_id for n in cluster if n.daemon.swarm}
    assert len(ids) == 3

    # every node made its overlay on the default data path port (loopback underlays cannot
    # carry VXLAN: the peers themselves are tested in tests/unit/node/test_network.py)
    for node in cluster:
        await eventually(lambda node=node: node.overlays and node.overlays[-1].port == 4789)

    sid = (await manager.call("POST", "/services/create", web_spec(3), expect=201))["ID"]

    async def spread() -> bool:
        running = [t for t in await manager.tasks(sid) if t["Status"]["State"] == "running"]
        return len({t["NodeID"] for t in running}) == 3

    await eventually(spread)
    everywhere = {(node_id, True) for node_id in ids.values()}
    for node in cluster:  # each node's mesh holds all three tasks, two learnt by gossip
        await eventually(lambda node=node: _endpoints(node) == everywhere)
        assert node.plane.published() == {("tcp", 8080, 80)}
        # what the dashboard and the metrics show of it, on the manager and on the workers
        [shown] = mesh(node.daemon)
        assert (shown["protocol"], shown["published"], shown["service"]) == ("tcp", 8080, sid)
        assert sum(b["ready"] for b in shown["backends"]) == 3

    # the keyring is the managers' (one key) on every node; the API never shows it
    swarm = await manager.call("GET", "/swarm")
    assert "NetworkKeys" not in swarm
    keys = {tuple(n.daemon.network.gossip.keyring.keys()) for n in cluster if n.daemon.network}
    assert len(keys) == 1 and len(next(iter(keys))) == 1

    # scale down: the removed tasks leave every node's mesh
    spec = await manager.call("GET", f"/services/{sid}")
    body = web_spec(1)
    await manager.call(
        "POST", f"/services/{sid}/update", body, version=str(spec["Version"]["Index"])
    )
    for node in cluster:
        await eventually(lambda node=node: len(_endpoints(node)) == 1)


async def test_an_endpoint_the_managers_do_not_know_is_dropped(cluster: list[TestNode]) -> None:
    manager, worker = cluster[0], cluster[1]
    assert worker.daemon.swarm is not None and worker.daemon.network is not None
    await eventually(lambda: len(worker.daemon.network.gossip.keyring.keys()) == 1)
    # a stale entry, as an agent that died before withdrawing it would leave
    worker.daemon.endpoints.set(
        EndpointEntry("svc", "ghosttask", worker.daemon.swarm.node_id, "198.19.9.9", True)
    )
    await eventually(lambda: "ghosttask" in _task_ids(manager))
    for node in (manager, worker):
        # spared for the reconcile grace (5 s: it may have raced the managers' view)
        await eventually(lambda node=node: "ghosttask" not in _task_ids(node), timeout=15.0)


def _task_ids(node: TestNode) -> set[str]:
    return {e.task_id for e in node.daemon.endpoints.entries()}


async def test_a_worker_with_tasks_leaves_cleanly_and_its_endpoints_go(
    cluster: list[TestNode],
) -> None:
    manager, worker = cluster[0], cluster[1]
    sid = (await manager.call("POST", "/services/create", web_spec(3), expect=201))["ID"]

    async def on_every_node() -> bool:
        running = [t for t in await manager.tasks(sid) if t["Status"]["State"] == "running"]
        return len({t["NodeID"] for t in running}) == 3

    await eventually(on_every_node)
    assert worker.daemon.swarm is not None and worker.runtime.alive()
    gone_id = worker.daemon.swarm.node_id
    await eventually(lambda: gone_id in {e.node_id for e in manager.daemon.endpoints.entries()})
    # the managers reassign the stopped task while the node is still a member: leaving must
    # not start it (it used to wait for it forever)
    await timeouts.wait_for(worker.call("POST", "/swarm/leave"), 15.0)
    assert worker.daemon.swarm is None and not worker.runtime.alive()
    assert worker.plane.closed and worker.overlays[-1].closed
    # gossip said goodbye: its endpoints leave the other nodes' tables at once
    await eventually(
        lambda: gone_id not in {e.node_id for e in manager.daemon.endpoints.entries()},
        timeout=3.0,
    )
