"""MeshSync hands a delta plane what changed since its last *successful* apply: a plane that
takes from each state only the services its delta names ends with exactly the desired
services, across bursts that collapse into one apply, applies that overlap new changes, and
failed applies."""

from __future__ import annotations

import asyncio
import contextlib

from shoal.cluster.wire import PublishedPort
from shoal.gossip.table import EndpointEntry, EndpointTable
from shoal.mesh.errors import MeshError
from shoal.mesh.model import MeshDelta, MeshState, ServiceGroups, service_groups
from shoal.mesh.recording import RecordingDataPlane
from shoal.node.mesh_sync import MeshSync, PortFeed
from tests.polling import eventually


class DeltaPlane:
    """Keeps per service only what the deltas name (as the kernel plane's planner does);
    `gate` holds each apply until set; `fail` makes the next applies raise."""

    def __init__(self) -> None:
        self.view: ServiceGroups = {}
        self.last: MeshState | None = None
        self.deltas: list[MeshDelta | None] = []
        self.fail = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = 0

    async def apply(self, state: MeshState) -> None:  # not used: MeshSync takes apply_delta
        raise AssertionError("apply called on a delta plane")

    async def apply_delta(self, state: MeshState, delta: MeshDelta | None) -> None:
        self.entered += 1
        await self.gate.wait()
        self.deltas.append(delta)
        if self.fail:
            self.fail -= 1
            raise MeshError("nft: simulated failure")
        groups = service_groups(state)
        if delta is None or delta.base is not self.last:
            self.view = groups  # whole
        else:
            for sid in delta.services:
                if sid in groups:
                    self.view[sid] = groups[sid]
                else:
                    self.view.pop(sid, None)
        self.last = state

    async def close(self) -> None:
        pass


def _port(sid: str, published: int) -> PublishedPort:
    return PublishedPort(sid, "tcp", published, 80, "ingress", "cluster", 0, False, sid)


async def _run(sync: MeshSync) -> asyncio.Future[None]:
    return asyncio.ensure_future(sync.run())


async def _stop(runner: asyncio.Future[None]) -> None:
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner


async def test_deltas_cover_bursts_overlapping_applies_and_failures() -> None:
    feed, table, plane = PortFeed(), EndpointTable(), DeltaPlane()
    sync = MeshSync(feed, table, plane, "n1", "198.19.1.0/24")
    runner = await _run(sync)
    try:
        feed.set([_port("s1", 8080), _port("s2", 8081), _port("s3", 8082)])
        for i in range(3):
            table.set(EndpointEntry(f"s{i + 1}", f"t{i}", "n1", f"198.19.1.{i + 2}", True))
        await eventually(lambda: plane.view == service_groups(sync.desired()))
        assert plane.deltas[0] is None  # the first apply is whole

        # an apply held in the plane while more changes arrive (a burst, collapsed)
        plane.gate.clear()
        entered = plane.entered
        table.set(EndpointEntry("s1", "t9", "n1", "198.19.1.9", True))
        await eventually(lambda: plane.entered > entered)
        table.remove("t1")  # s2 changes while s1's apply is under way
        feed.set([_port("s1", 8080), _port("s3", 8082), _port("s4", 8083)])  # s2 unpublished
        table.set(EndpointEntry("s4", "t4", "n1", "198.19.1.14", True))
        plane.gate.set()
        await eventually(lambda: plane.view == service_groups(sync.desired()))

        # failed applies: the next delta still covers everything since the last success
        success = sync.applied
        plane.fail = 2
        table.set(EndpointEntry("s3", "t5", "n1", "198.19.1.15", False))
        await eventually(lambda: plane.fail == 0, timeout=5.0)
        table.remove("t0")
        await eventually(lambda: plane.view == service_groups(sync.desired()), timeout=5.0)
        last = plane.deltas[-1]
        assert last is not None and last.base is success
        assert {"s1", "s3"} <= last.services
        assert sync.applied is plane.last
    finally:
        await _stop(runner)


async def test_a_plane_without_apply_delta_gets_whole_states() -> None:
    feed, table, plane = PortFeed(), EndpointTable(), RecordingDataPlane()
    sync = MeshSync(feed, table, plane, "n1", "198.19.1.0/24")
    runner = await _run(sync)
    try:
        feed.set([_port("s1", 8080)])
        table.set(EndpointEntry("s1", "t1", "n1", "198.19.1.2", True))
        await eventually(lambda: plane.last is not None and len(plane.last.endpoints) == 1)
        count = len(plane.states)
        feed.set([_port("s1", 8080)])  # no change: no apply
        table.set(EndpointEntry("s1", "t1", "n1", "198.19.1.2", True))
        table.set(EndpointEntry("s1", "t2", "n1", "198.19.1.3", True))
        await eventually(lambda: plane.last is not None and len(plane.last.endpoints) == 2)
        assert len(plane.states) == count + 1
        assert sync.applied == sync.desired()
    finally:
        await _stop(runner)
