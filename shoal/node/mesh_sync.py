"""Keeps the data plane in step with the published ports and the endpoint table.

Ports come from the services (the store, on a manager); endpoints from the endpoint table.
Whenever either changes, the desired `MeshState` is rebuilt and applied; bursts of changes
collapse into one apply.
"""

from __future__ import annotations

import asyncio
import logging

from shoal.gossip.table import EndpointTable
from shoal.manager.state.store import Store
from shoal.mesh.dataplane import DataPlane
from shoal.mesh.model import Endpoint, MeshState, PortSpec

__all__ = ["MeshSync"]

log = logging.getLogger(__name__)


class MeshSync:
    def __init__(
        self,
        store: Store,
        table: EndpointTable,
        plane: DataPlane,
        node_id: str,
        subnet: str,
        ready: asyncio.Event | None = None,
    ) -> None:
        self._ready = ready
        self._store = store
        self._table = table
        self._plane = plane
        self._node_id = node_id
        self._subnet = subnet
        self._dirty = asyncio.Event()
        self.applied: MeshState | None = None

    def desired(self) -> MeshState:
        ports: list[PortSpec] = []
        for service in self._store.view().list("service"):
            for port in service.endpoint.ports or []:
                if port.published_port and port.protocol in ("tcp", "udp"):
                    ports.append(
                        PortSpec(
                            service_id=service.id,
                            protocol=port.protocol,
                            published=port.published_port,
                            target=port.target_port,
                            mode="host" if port.publish_mode == "host" else "ingress",
                        )
                    )
        endpoints = [
            Endpoint(e.service_id, e.task_id, e.node_id, e.address, e.ready)
            for e in self._table.entries()
        ]
        return MeshState(
            node_id=self._node_id,
            local_subnet=self._subnet,
            ports=tuple(sorted(ports, key=lambda p: (p.protocol, p.published))),
            endpoints=tuple(sorted(endpoints, key=lambda e: e.task_id)),
        )

    async def run(self) -> None:
        # After a restart the kernel still holds the last rules; wait until the agent has
        # adopted the surviving tasks so the first apply does not drop their endpoints.
        if self._ready is not None:
            await self._ready.wait()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._watch_store())
            tg.create_task(self._watch_table())
            while True:
                state = self.desired()
                if state != self.applied:
                    try:
                        await self._plane.apply(state)
                        self.applied = state
                    except Exception:
                        log.exception("mesh: applying the data plane failed; retrying in 1s")
                        await asyncio.sleep(1.0)
                        continue
                await self._dirty.wait()
                self._dirty.clear()

    async def _watch_store(self) -> None:
        queue = self._store.watch()
        try:
            while True:
                event = await queue.get()
                if getattr(event, "kind", None) == "service" or not hasattr(event, "kind"):
                    self._dirty.set()
        finally:
            self._store.unwatch(queue)

    async def _watch_table(self) -> None:
        seen = self._table.version
        while True:
            seen = await self._table.wait_change(seen)
            self._dirty.set()
