"""Keeps the data plane in step with the published ports and the endpoint table.

Ports come from a `PortSource`: the services in the store on a manager (`StorePorts`), the
dispatcher's session on a worker, which has no store (`PortFeed`). Endpoints come from the
endpoint table. Whenever either changes, the desired `MeshState` is rebuilt and applied;
bursts of changes collapse into one apply.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal, Protocol, cast

from shoal.gossip.table import EndpointTable
from shoal.manager.state.store import Store
from shoal.mesh.dataplane import DataPlane
from shoal.mesh.model import Endpoint, MeshState, PortSpec
from shoal.mesh.userspace.config import proxy_protocol_ports

__all__ = ["MeshSync", "PortFeed", "PortSource", "StorePorts"]

log = logging.getLogger(__name__)


class PortSource(Protocol):
    def ports(self) -> list[PortSpec]:
        """Every service's published ports, now."""
        ...

    async def changed(self) -> None:
        """Return after the ports may have changed (spurious returns are fine)."""
        ...


class StorePorts:
    """Published ports read from the services in the store (a manager)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue = store.watch()

    def ports(self) -> list[PortSpec]:
        ports: list[PortSpec] = []
        for service in self._store.view().list("service"):
            proxied, _ = proxy_protocol_ports(service.spec.labels)  # userspace mesh only
            for port in service.endpoint.ports or []:
                if port.published_port and port.protocol in ("tcp", "udp"):
                    ports.append(
                        PortSpec(
                            service_id=service.id,
                            protocol=port.protocol,
                            published=port.published_port,
                            target=port.target_port,
                            mode="host" if port.publish_mode == "host" else "ingress",
                            proxy_protocol=(port.protocol, port.published_port) in proxied,
                        )
                    )
        return ports

    async def changed(self) -> None:
        while True:
            event = await self._queue.get()
            if getattr(event, "kind", None) == "service" or not hasattr(event, "kind"):
                return

    def close(self) -> None:
        self._store.unwatch(self._queue)


class PortFeed:
    """Published ports as the dispatcher last sent them (a worker)."""

    def __init__(self) -> None:
        self._ports: list[PortSpec] = []
        self._event = asyncio.Event()

    def set(self, ports: list[tuple[str, str, int, int, str]]) -> None:
        new = [
            PortSpec(
                service_id=sid,
                protocol=cast(Literal["tcp", "udp"], proto),
                published=published,
                target=target,
                mode="host" if mode == "host" else "ingress",
            )
            for sid, proto, published, target, mode in ports
            if proto in ("tcp", "udp")
        ]
        if new != self._ports:
            self._ports = new
            self._event.set()

    def ports(self) -> list[PortSpec]:
        return list(self._ports)

    async def changed(self) -> None:
        await self._event.wait()
        self._event.clear()


class MeshSync:
    def __init__(
        self,
        ports: PortSource,
        table: EndpointTable,
        plane: DataPlane,
        node_id: str,
        subnet: str,
        ready: asyncio.Event | None = None,
    ) -> None:
        self._ready = ready
        self._ports = ports
        self._table = table
        self._plane = plane
        self._node_id = node_id
        self._subnet = subnet
        self._dirty = asyncio.Event()
        self.applied: MeshState | None = None

    def desired(self) -> MeshState:
        ports = self._ports.ports()
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
            tg.create_task(self._watch_ports())
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

    async def _watch_ports(self) -> None:
        while True:
            await self._ports.changed()
            self._dirty.set()

    async def _watch_table(self) -> None:
        seen = self._table.version
        while True:
            seen = await self._table.wait_change(seen)
            self._dirty.set()
