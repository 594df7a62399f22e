"""This node's part of the routing mesh: data plane, overlay and endpoint gossip, together.

    MeshSync   published ports (from the managers) + the endpoint table -> the data plane
               and the health ports of "local" services (HealthPorts)
    Overlay    one VXLAN device, one route/neighbour/fdb entry per other node (4789/udp)
    Gossip     the endpoint table, replicated between all nodes (7946/udp+tcp, encrypted)

What drives the overlay and gossip is the node's `NetView` (shoal/manager/netview): the
peers (underlay address, task slice, gossip address), the data path port, the gossip keys
and the set of live tasks. A manager reads it from its store (`StoreNet`), a worker gets it
with every dispatcher session message (`NetFeed`). On each change, and periodically as
anti-entropy:

* the overlay is set to exactly the peers (every `repair_every` seconds it also re-reads the
  kernel and repairs what was changed behind its back);
* the keyring takes the managers' keys, sealing with the first;
* gossip joins every peer that is not an alive member (a node that comes back, a healed
  partition) — SWIM spreads the rest;
* the endpoint table is reconciled against the live tasks (every `reconcile_every` seconds
  and whenever the set changes), so no stale backend survives what the managers know.

Gossip binds before anything else: its address goes into the node's session request (a
worker) or its node object (a manager). Until the managers' keys arrive it seals with a
random key of its own, so it can neither read nor be read by anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

from shoal import timeouts
from shoal.agent.dns.server import NodeDns
from shoal.agent.svcnet.apply import ServiceNetworks
from shoal.api.netview import NetView, network_view
from shoal.errors import ShoalError
from shoal.gossip.crypto import Keyring
from shoal.gossip.members import MemberStatus
from shoal.gossip.node import GossipNode, GossipOptions
from shoal.gossip.table import EndpointTable
from shoal.manager.state.store import Store, commit_of
from shoal.mesh.dataplane import DataPlane
from shoal.mesh.health import HealthPorts
from shoal.mesh.overlay import Overlay, OverlayPeer
from shoal.node.mesh_sync import MeshSync, PortSource

__all__ = [
    "NetFeed",
    "NetSource",
    "NodeNetwork",
    "OverlayFactory",
    "OverlayLike",
    "StoreNet",
    "real_overlay",
]

log = logging.getLogger(__name__)


class NetSource(Protocol):
    def view(self) -> NetView | None:
        """The latest network view; None until there is one."""
        ...

    async def changed(self) -> None:
        """Return after the view may have changed (spurious returns are fine)."""
        ...


VIEW_KINDS = frozenset({"node", "cluster", "task", "service"})  # what `network_view` reads


class StoreNet:
    """The network view computed from the store (a manager)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue = store.watch()

    def view(self) -> NetView:
        view = self._store.view()
        return network_view(view.nodes.list(), view.clusters.list(), view.tasks.list(),
                            view.services.list())

    async def changed(self) -> None:
        await commit_of(self._queue, VIEW_KINDS)

    def close(self) -> None:
        self._store.unwatch(self._queue)


class NetFeed:
    """The network view as the dispatcher last sent it (a worker)."""

    def __init__(self) -> None:
        self._view: NetView | None = None
        self._event = asyncio.Event()

    def set(self, view: NetView) -> None:
        if view != self._view:
            self._view = view
            self._event.set()

    def view(self) -> NetView | None:
        return self._view

    async def changed(self) -> None:
        await self._event.wait()
        self._event.clear()


class OverlayLike(Protocol):
    async def apply(self, peers: Sequence[OverlayPeer]) -> None: ...

    def invalidate(self) -> None: ...

    async def close(self) -> None: ...


OverlayFactory = Callable[[str, str, int], OverlayLike]  # (underlay, subnet, port)


def real_overlay(underlay: str, subnet: str, port: int) -> OverlayLike:
    return Overlay(underlay, subnet, port=port)


class NodeNetwork:
    def __init__(
        self,
        *,
        node_id: str,
        addr: str,
        subnet: str,
        endpoints: EndpointTable,
        plane: DataPlane,
        ports: PortSource,
        net: NetSource,
        gossip: GossipOptions,
        overlay_factory: OverlayFactory | None = real_overlay,
        reconcile_every: float = 10.0,
        repair_every: float = 60.0,
        health_host: str = "0.0.0.0",
    ) -> None:
        self.node_id = node_id
        self.addr = addr
        self.subnet = subnet
        self.plane = plane
        self.health = HealthPorts(health_host)  # "local" services' health ports
        self._ports = ports
        self._endpoints = endpoints
        self.mesh: MeshSync | None = None
        # the embedded DNS and the service networks, set before start() (service_networks)
        self.dns: NodeDns | None = None
        # the view `_follow` took last: read per DNS query, so not recomputed per query
        self.followed: NetView | None = None
        self.svcnet: ServiceNetworks | None = None
        self.gossip = GossipNode(gossip, Keyring(secrets.token_bytes(32)), endpoints)
        self._net = net
        self._overlay_factory = overlay_factory
        self.overlay: OverlayLike | None = None
        self._reconcile_every = reconcile_every
        self._repair_every = repair_every
        self._tasks: list[asyncio.Task[None]] = []
        self._applied_peers: tuple[OverlayPeer, ...] | None = None
        self._keys: tuple[bytes, ...] = ()
        self._live: frozenset[tuple[str, str]] | None = None
        self._peer_ids: frozenset[str] = frozenset()
        self._skipped: tuple[str, ...] = ()
        self._join_now = False
        self._joining: asyncio.Task[None] | None = None

    @property
    def endpoints(self) -> EndpointTable:
        return self._endpoints

    @property
    def gossip_addr(self) -> str:
        return self.gossip.addr

    def net_view(self) -> NetView | None:
        """The latest network view (peers and their addresses); None until there is one."""
        return self._net.view()

    async def bind(self) -> None:
        """Start gossip; its address (`gossip_addr`) is known when this returns."""
        self._spawn(self.gossip.run(), "gossip")
        started = asyncio.ensure_future(self.gossip.started())
        await asyncio.wait({started, self._tasks[0]}, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            started.cancel()
            self._tasks[0].result()  # raises why gossip could not bind

    def start(self, ready: asyncio.Event | None = None) -> None:
        """Run the mesh (its first apply waits for `ready`: the agent's adoption of the
        surviving tasks) and follow the network view."""
        self.mesh = MeshSync(
            self._ports, self._endpoints, self.plane, self.node_id, self.subnet, ready=ready,
            health=self.health,
        )
        self._spawn(self.mesh.run(), "mesh")
        self._spawn(self._follow(), "network")
        if self.dns is not None:
            self._spawn(self.dns.run(), "dns")
        if self.svcnet is not None:
            self._spawn(self.svcnet.run(), "svcnet")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.append(task)

    async def stop(self, leave: bool = False) -> None:
        """Stop every loop. The kernel state (mesh rules, overlay) stays for the next start,
        unless `close()` follows; with `leave`, gossip tells the others first."""
        with contextlib.suppress(Exception):
            await self.gossip.stop(leave=leave)
        tasks, self._tasks = self._tasks, []
        if self._joining is not None:
            self._joining.cancel()
            tasks.append(self._joining)
        for task in tasks:
            if task.get_name() != "gossip":
                task.cancel()
        # gossip ends by itself once told to stop; if it does not, it is cancelled
        _, late = await asyncio.wait(tasks, timeout=5.0) if tasks else (set(), set())
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.health.close()  # in-process sockets: they cannot outlive the daemon
        if isinstance(self._net, StoreNet):
            self._net.close()

    async def close(self) -> None:
        """Remove this node's mesh rules and overlay device (`swarm leave`)."""
        if self.svcnet is not None:
            await self.svcnet.close()
        await self.plane.close()
        await self.health.close()
        if self.overlay is not None:
            await self.overlay.close()

    # -- following the view -------------------------------------------------------------
    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        next_repair = loop.time() + self._repair_every
        next_reconcile = loop.time() + self._reconcile_every
        while True:
            view = self.followed = self._net.view()
            now = loop.time()
            if view is not None:
                repair = now >= next_repair
                if repair:
                    next_repair = now + self._repair_every
                periodic = now >= next_reconcile
                if periodic:
                    next_reconcile = now + self._reconcile_every
                try:
                    await self._apply(view, repair=repair, periodic=periodic)
                except Exception:  # the loop must outlive any one bad view
                    log.exception("network: applying the network view failed")
            timeout = max(min(next_repair, next_reconcile) - loop.time(), 0.05)
            with contextlib.suppress(TimeoutError):
                await timeouts.wait_for(self._net.changed(), timeout)

    async def _apply(self, view: NetView, *, repair: bool, periodic: bool) -> None:
        self._take_keys(view.keys)
        await self._apply_overlay(view, repair)
        if periodic or view.live != self._live:
            self._live = view.live
            with contextlib.suppress(RuntimeError):  # gossip not running (stopping)
                self.gossip.reconcile(set(view.live))
        peer_ids = frozenset(p.node_id for p in view.peers)
        if periodic or self._join_now or peer_ids != self._peer_ids:
            self._peer_ids = peer_ids
            self._join_now = False
            # in the background: a push-pull to a node that is down takes its full timeout,
            # and the overlay, keys and reconcile must not wait for it
            if self._joining is None or self._joining.done():
                self._joining = asyncio.ensure_future(self._join(view))

    def _take_keys(self, keys: tuple[bytes, ...]) -> None:
        if not keys or keys == self._keys:
            return
        ring = self.gossip.keyring
        try:
            for key in keys:
                ring.install(key)
            ring.use(keys[0])
            accepted = ring.keys()
            for key in accepted:
                if key not in keys:
                    ring.remove(key)
        except ShoalError as exc:
            log.error("network: cannot take the cluster's gossip keys: %s", exc.message)
            return
        self._join_now = not self._keys  # the first real key: join everyone now
        self._keys = keys
        log.info("network: gossip keyring updated (%d key(s))", len(keys))

    async def _apply_overlay(self, view: NetView, repair: bool) -> None:
        if self._overlay_factory is None:
            return
        peers = self._overlay_peers(view)
        try:
            if self.overlay is None:
                self.overlay = self._overlay_factory(self.addr, self.subnet, view.data_path_port)
            if repair:
                self.overlay.invalidate()
            elif peers == self._applied_peers:
                return
            await self.overlay.apply(peers)
            self._applied_peers = peers
        except ShoalError as exc:
            self._applied_peers = None
            log.error("network: the overlay could not be set up: %s", exc.message)
        except OSError as exc:
            self._applied_peers = None
            log.error("network: the overlay could not be set up: %s", exc)

    def _overlay_peers(self, view: NetView) -> tuple[OverlayPeer, ...]:
        peers: list[OverlayPeer] = []
        skipped: list[str] = []
        for p in view.peers:
            try:
                peers.append(OverlayPeer(p.node_id, p.addr, p.subnet))
            except ShoalError as exc:
                skipped.append(exc.message)
        if skipped and tuple(skipped) != self._skipped:
            log.warning("network: overlay peers left out: %s", "; ".join(skipped))
        self._skipped = tuple(skipped)
        return tuple(peers)

    async def _join(self, view: NetView) -> None:
        if not self._keys:
            return  # nobody could read us yet
        try:
            members = {
                m.node_id for m in self.gossip.members()
                if m.status in (MemberStatus.ALIVE, MemberStatus.SUSPECT)
            }
        except RuntimeError:
            return
        targets = [
            p.gossip for p in view.peers
            if p.gossip and p.node_id != self.node_id and p.node_id not in members
        ]
        if targets:
            answered = await self.gossip.join(targets)
            log.debug("network: gossip join %d/%d answered", answered, len(targets))
