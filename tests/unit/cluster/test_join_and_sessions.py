"""A manager and workers in one process, joined over loopback 2377 (mutual TLS, gRPC)."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shoal.ca.certs import make_csr, new_key, sign_node_csr
from shoal.ca.files import NodeTLS, load_node_tls
from shoal.ca.root import RootCA, join_token
from shoal.cluster.client import ClusterClient
from shoal.cluster.raft import send_raft
from shoal.cluster.wire import Empty, HeartbeatResponse
from shoal.errors import InvalidArgument, ShoalError
from tests.polling import eventually
from tests.unit.cluster.nodes import TestNode, web_spec


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[TestNode]:
    node = TestNode(tmp_path / "m1", "m1")
    await node.start()
    await node.init()
    try:
        yield node
    finally:
        await node.stop()


@pytest.fixture
async def worker(tmp_path: Path) -> AsyncIterator[TestNode]:
    node = TestNode(tmp_path / "w1", "w1")
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def test_a_worker_joins_runs_tasks_and_has_the_ports(
    manager: TestNode, worker: TestNode
) -> None:
    await worker.join(manager)
    nodes = await eventually(
        lambda: _ready(manager, 2)
    )
    assert nodes["w1"]["Spec"]["Role"] == "worker" and nodes["m1"]["Spec"]["Role"] == "manager"
    assert nodes["w1"]["Subnet"] != nodes["m1"]["Subnet"]
    # the key stays on the worker; its certificate names its node ID and role
    tls = load_node_tls(worker.daemon.root / "certificates")
    assert tls is not None and tls.identity.node_id == nodes["w1"]["ID"]
    assert tls.identity.role == "worker"

    sid = (await manager.call("POST", "/services/create", web_spec(2), expect=201))["ID"]

    async def spread() -> bool:
        running = [t for t in await manager.tasks(sid) if t["Status"]["State"] == "running"]
        return len(running) == 2 and len({t["NodeID"] for t in running}) == 2

    await eventually(spread)
    assert len(worker.runtime.alive()) == 1 and len(manager.runtime.alive()) == 1
    await eventually(lambda: worker.plane.published() == {("tcp", 8080, 80)})

    # a worker's API answers manager-only calls with Docker's 503
    body = await worker.call("GET", "/nodes", expect=503)
    assert "Worker nodes can't be used to view or modify cluster state" in body["message"]
    # joining again is refused
    body = await worker.join(manager, expect=503)
    assert "already part of a swarm" in body["message"]
    # a live node cannot be removed without --force
    body = await manager.call("DELETE", f"/nodes/{nodes['w1']['ID']}", expect=400)
    assert "is not down" in body["message"]


async def _ready(manager: TestNode, count: int) -> dict[str, dict[str, object]] | None:
    nodes = await manager.nodes()
    ready = [n for n in nodes.values() if n["Status"]["State"] == "ready"]
    return nodes if len(ready) == count else None


async def test_bad_tokens_are_refused_and_nothing_is_created(
    manager: TestNode, worker: TestNode
) -> None:
    tokens = await manager.tokens()
    other = join_token(RootCA.generate("other"))
    body = await worker.join(manager, token=other, expect=400)
    assert "remote CA does not match fingerprint" in body["message"]
    digest = tokens["Worker"].split("-")[2]
    forged = f"SWMTKN-1-{digest}-{'0' * 25}"
    body = await worker.join(manager, token=forged, expect=400)
    assert "A valid join token is necessary" in body["message"]
    body = await worker.join(manager, token="SWMTKN-1-nope", expect=400)
    assert "invalid join token" in body["message"]
    # rotation: the old worker token stops working at once
    swarm = await manager.call("GET", "/swarm")
    await manager.call(
        "POST", "/swarm/update", swarm["Spec"], version=str(swarm["Version"]["Index"]),
        rotateWorkerToken="true",
    )
    assert (await manager.tokens())["Worker"] != tokens["Worker"]
    body = await worker.join(manager, token=tokens["Worker"], expect=400)
    assert "A valid join token is necessary" in body["message"]
    assert list(await manager.nodes()) == ["m1"]
    assert worker.daemon.swarm is None


async def test_rotation_leaves_joined_workers_alone_and_worker_certs_are_not_managers(
    manager: TestNode, worker: TestNode
) -> None:
    await worker.join(manager)
    await eventually(lambda: _ready(manager, 2))
    swarm = await manager.call("GET", "/swarm")
    await manager.call(
        "POST", "/swarm/update", swarm["Spec"], version=str(swarm["Version"]["Index"]),
        rotateWorkerToken="true", rotateManagerToken="true",
    )
    tls = load_node_tls(worker.daemon.root / "certificates")
    assert tls is not None
    client = ClusterClient(manager.addr, tls.ca_pem, tls)
    try:
        with pytest.raises(InvalidArgument, match="PermissionDenied"):
            await send_raft(client, b"hello")
        renewed = await worker.daemon.renewer.renew_once()  # type: ignore[union-attr]
        assert renewed.identity == tls.identity and renewed.cert_pem != tls.cert_pem
    finally:
        await client.close()
    # still in session after the rotation and renewal
    assert worker.daemon.session is not None and worker.daemon.session.connected.is_set()


async def test_a_silent_node_goes_down_its_task_moves_and_it_comes_back(
    manager: TestNode, worker: TestNode, tmp_path: Path
) -> None:
    await worker.join(manager)
    await eventually(lambda: _ready(manager, 2))
    await _heartbeat(manager, 200_000_000)  # 0.2 s
    sid = (await manager.call("POST", "/services/create", web_spec(2), expect=201))["ID"]

    async def on_worker() -> list[dict[str, object]]:
        return [t for t in await manager.tasks(sid)
                if t["Status"]["State"] == "running" and t["NodeID"] == worker.daemon.swarm.node_id]  # type: ignore[union-attr]

    stale = (await eventually(on_worker))[0]
    await worker.stop()  # power off: no more heartbeats
    nodes = await eventually(lambda: _state(manager, "w1", "down"))
    assert nodes["w1"]["Status"]["Message"] == "heartbeat failure"

    async def replaced() -> bool:
        running = [t for t in await manager.tasks(sid)
                   if t["Status"]["State"] == "running" and t["DesiredState"] == "running"]
        return len(running) == 2 and stale["ID"] not in {t["ID"] for t in running}

    await eventually(replaced)
    # the node comes back from its data root: ready again, its stale task is shut down
    back = TestNode(tmp_path / "w1", "w1")
    await back.start()
    try:
        await eventually(lambda: _state(manager, "w1", "ready"))
        task = next(t for t in await manager.tasks(sid) if t["ID"] == stale["ID"])
        assert task["DesiredState"] == "shutdown"
        await eventually(lambda: not back.runtime.alive())
    finally:
        await back.stop()


async def _state(manager: TestNode, host: str, state: str) -> dict[str, dict[str, object]] | None:
    nodes = await manager.nodes()
    return nodes if nodes[host]["Status"]["State"] == state else None


async def test_a_worker_leaves(manager: TestNode, worker: TestNode) -> None:
    await _heartbeat(manager, 200_000_000)
    await worker.join(manager)
    await eventually(lambda: _ready(manager, 2))
    await worker.call("POST", "/swarm/leave")
    assert worker.daemon.swarm is None
    assert not (worker.daemon.root / "certificates").exists()
    # like swarm: the node stays listed, down, until `node rm`
    await eventually(lambda: _state(manager, "w1", "down"))
    await manager.call("DELETE", "/nodes/w1")
    assert list(await manager.nodes()) == ["m1"]


async def _heartbeat(manager: TestNode, period_ns: int) -> None:
    swarm = await manager.call("GET", "/swarm")
    spec = swarm["Spec"]
    spec["Dispatcher"]["HeartbeatPeriod"] = period_ns
    await manager.call("POST", "/swarm/update", spec, version=str(swarm["Version"]["Index"]))


async def test_2377_refuses_strangers(manager: TestNode) -> None:
    tls = manager.daemon.tls
    assert tls is not None
    other = RootCA.generate("other")
    key = new_key()
    now = datetime.datetime.now(datetime.UTC)
    forged = sign_node_csr(other, make_csr(key), "evil", "manager", tls.identity.cluster_id,
                           datetime.timedelta(hours=1), now)
    callers = {
        "no certificate": (ClusterClient(manager.addr, tls.ca_pem, None), "Unauthenticated"),
        "another CA": (ClusterClient(manager.addr, tls.ca_pem, NodeTLS(tls.ca_pem, forged, key)),
                       "unreachable"),
    }
    for what, (client, error) in callers.items():
        try:
            with pytest.raises(ShoalError, match=error):
                await client.call("Dispatcher/Heartbeat", Empty(), HeartbeatResponse, timeout=3)
        finally:
            await client.close()
        assert what
