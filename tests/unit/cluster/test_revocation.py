"""A removed node's certificate is void on 2377, though it has not expired."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shoal.ca.files import load_node_tls
from shoal.cluster.client import ClusterClient
from shoal.cluster.wire import Empty, HeartbeatResponse
from shoal.errors import ShoalError
from tests.polling import eventually
from tests.unit.cluster.nodes import TestNode


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[TestNode, TestNode]]:
    manager, worker = TestNode(tmp_path / "m1", "m1"), TestNode(tmp_path / "w1", "w1")
    for node in (manager, worker):
        await node.start()
    try:
        await manager.init()
        await worker.join(manager)
        yield manager, worker
    finally:
        for node in (worker, manager):
            await node.stop()


async def test_a_removed_nodes_certificate_is_refused(pair: tuple[TestNode, TestNode]) -> None:
    manager, worker = pair
    await eventually(lambda: len(manager.daemon.store.view().list("node")) == 2)  # type: ignore[union-attr]
    tls = load_node_tls(worker.daemon.root / "certificates")
    assert tls is not None
    client = ClusterClient(manager.addr, tls.ca_pem, tls)
    try:
        await client.call("Dispatcher/Heartbeat", Empty(), HeartbeatResponse)  # a member: fine
        await manager.call("DELETE", f"/nodes/{tls.identity.node_id}", force="true")
        with pytest.raises(ShoalError, match="was removed from the swarm"):
            await client.call("Dispatcher/Heartbeat", Empty(), HeartbeatResponse)
    finally:
        await client.close()
    # the list stays inside the cluster
    assert "RemovedNodes" not in await manager.call("GET", "/swarm")
