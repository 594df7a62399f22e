"""Keeps the data plane in step with the published ports and the endpoint table.

Ports come from a `PortSource`: the services in the store on a manager (`StorePorts`), the
dispatcher's session on a worker, which has no store (`PortFeed`). Endpoints come from the
endpoint table. Whenever either changes, the desired `MeshState` is rebuilt and applied
(to the data plane, then to the health ports of "local" services); bursts of changes
collapse into one apply. `applied` is the last state the data plane took (what `network
inspect ingress -v` shows).

A data plane that plans by the change (`DeltaDataPlane`, the kernel one) is also handed a
`MeshDelta`: the services whose ports or endpoints differ between `applied` (the last
*successful* apply) and the new state, found by comparing the two per service. So the
delta always covers everything since the last success, however many changes a burst
collapsed and however many applies failed in between; the plane itself replans whole when
it does not know what the kernel holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Literal, Protocol, cast

from shoal import timeouts
from shoal.cluster.wire import PublishedPort
from shoal.gossip.table import EndpointTable
from shoal.manager.dispatcher.ports import published_ports
from shoal.manager.state.store import Store, commit_of
from shoal.mesh.dataplane import DataPlane, DeltaDataPlane
from shoal.mesh.errors import MeshError
from shoal.mesh.health import HealthPorts
from shoal.mesh.model import (
    Endpoint,
    MeshDelta,
    MeshState,
    PortSpec,
    ServiceGroups,
    changed_services,
    service_groups,
)

__all__ = ["MeshSync", "PortFeed", "PortSource", "StorePorts", "port_spec"]

log = logging.getLogger(__name__)


def port_spec(port: PublishedPort) -> PortSpec:
    """The mesh's view of a published port (the dispatcher's wire form, also a manager's)."""
    return PortSpec(
        service_id=port.service_id,
        protocol=cast(Literal["tcp", "udp"], port.protocol),
        published=port.published,
        target=port.target,
        mode="host" if port.mode == "host" else "ingress",
        proxy_protocol=port.proxy_protocol,
        policy="local" if port.policy == "local" else "cluster",
        health_port=port.health_port,
        service_name=port.service_name,
    )


class PortSource(Protocol):
    def ports(self) -> list[PortSpec]:
        """Every service's published ports, now."""
        ...

    async def changed(self) -> None:
        """Return after the ports may have changed (spurious returns are fine)."""
        ...


_SERVICE = frozenset({"service"})


class StorePorts:
    """Published ports read from the services in the store (a manager)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue = store.watch()

    def ports(self) -> list[PortSpec]:
        return [port_spec(p) for p in published_ports(self._store.view().services.list())]

    async def changed(self) -> None:
        # after a commit that wrote a service (returning on every commit's marker made the
        # mesh rebuild its whole desired state per secret or task write)
        await commit_of(self._queue, _SERVICE)

    def close(self) -> None:
        self._store.unwatch(self._queue)


class PortFeed:
    """Published ports as the dispatcher last sent them (a worker)."""

    def __init__(self) -> None:
        self._ports: list[PortSpec] = []
        self._event = asyncio.Event()

    def set(self, ports: list[PublishedPort]) -> None:
        new = [port_spec(p) for p in ports if p.protocol in ("tcp", "udp")]
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
        health: HealthPorts | None = None,
    ) -> None:
        self._ready = ready
        self._health = health
        self._health_applied: MeshState | None = None
        self._health_error = ""
        self._ports = ports
        self._table = table
        self._plane = plane
        self._node_id = node_id
        self._subnet = subnet
        self._dirty = asyncio.Event()
        self.applied: MeshState | None = None
        self._groups: ServiceGroups = {}  # `applied` per service
        # decided once: isinstance of a runtime Protocol walks its members each time
        self._by_change = isinstance(plane, DeltaDataPlane)

    def desired(self) -> MeshState:
        ports = self._ports.ports()
        endpoints = [
            Endpoint(e.service_id, e.task_id, e.node_id, e.address, e.ready)
            for e in self._table.entries()
            if not e.starting
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
                self._dirty.clear()  # what changes from here on is seen by the next pass
                state = self.desired()
                groups = service_groups(state)
                changed = changed_services(self._groups, groups)
                if self.applied is None or changed or not self._same_node(state):
                    try:
                        await self._apply_plane(state, changed)
                        self.applied, self._groups = state, groups
                    except Exception:
                        log.exception("mesh: applying the data plane failed; retrying in 1s")
                        await asyncio.sleep(1.0)
                        continue
                state = self.applied  # equal to the desired state, as the plane has it
                assert state is not None
                if await self._apply_health(state):
                    await self._dirty.wait()
                else:  # a health port could not be bound: try again in a second
                    with contextlib.suppress(TimeoutError):
                        await timeouts.wait_for(self._dirty.wait(), 1.0)

    def _same_node(self, state: MeshState) -> bool:
        applied = self.applied
        return applied is not None and (applied.node_id, applied.local_subnet) == (
            state.node_id, state.local_subnet)

    async def _apply_plane(self, state: MeshState, changed: frozenset[str]) -> None:
        if self._by_change:
            base = self.applied
            delta = MeshDelta(base, changed) if base is not None else None
            await cast(DeltaDataPlane, self._plane).apply_delta(state, delta)
        else:
            await self._plane.apply(state)

    async def _apply_health(self, state: MeshState) -> bool:
        """The health ports follow the applied state; False while one cannot be bound (said
        once per different error: the data plane is not held back for it)."""
        if self._health is None or state == self._health_applied:
            return True
        try:
            await self._health.apply(state)
        except MeshError as exc:
            if exc.message != self._health_error:
                log.error("%s; retrying every second", exc.message)
                self._health_error = exc.message
            return False
        self._health_applied, self._health_error = state, ""
        return True

    async def _watch_ports(self) -> None:
        while True:
            await self._ports.changed()
            self._dirty.set()

    async def _watch_table(self) -> None:
        seen = self._table.version
        while True:
            seen = await self._table.wait_change(seen)
            self._dirty.set()
