"""MeshSync and the health ports: they follow the endpoint table after the data plane, and a
health port another program holds delays neither the data plane nor the other changes; it is
bound as soon as it is free."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from shoal.cluster.wire import PublishedPort
from shoal.gossip.table import EndpointEntry, EndpointTable
from shoal.mesh.health import HealthPorts
from shoal.mesh.recording import RecordingDataPlane
from shoal.node.mesh_sync import MeshSync, PortFeed
from tests.polling import eventually
from tests.unit.mesh.userspace_support import free_port


async def test_a_busy_health_port_is_retried_without_holding_the_plane_back() -> None:
    number = free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", number))
    holder.listen()
    feed, table, plane = PortFeed(), EndpointTable(), RecordingDataPlane()
    health = HealthPorts("127.0.0.1")
    sync = MeshSync(feed, table, plane, "n1", "198.19.1.0/24", health=health)
    runner = asyncio.ensure_future(sync.run())
    try:
        feed.set([PublishedPort("s1", "tcp", 8080, 80, "ingress", "local", number, False, "web")])
        await eventually(lambda: plane.last is not None and len(plane.last.ports) == 1)
        table.set(EndpointEntry("s1", "t1", "n1", "198.19.1.5", True))
        # the plane takes the new endpoint although the health port is still busy
        await eventually(lambda: plane.last is not None and len(plane.last.endpoints) == 1)
        assert health.ports == [] and sync.applied == plane.last
        holder.close()
        await eventually(lambda: health.ports == [number], timeout=5.0)
        target = health.target(number)
        assert target is not None and (target.status, target.local_endpoints) == (200, 1)
        table.remove("t1")
        await eventually(lambda: (t := health.target(number)) is not None and t.status == 503)
    finally:
        holder.close()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await health.close()
