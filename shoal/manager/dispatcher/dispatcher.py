"""The dispatcher: remote nodes' sessions over 2377, and who is alive.

Each member node keeps one session: a stream down (its tasks, every service's published
ports, the managers' addresses and the heartbeat period, sent whole after each change that
concerns it), task status up (`UpdateTaskStatus`) and heartbeats. The caller's node ID is
the one in its certificate, never a field it sends. A node that misses its heartbeats for
GRACE_PERIODS periods is marked down (the orchestrator then replaces its tasks); its next
heartbeat or session marks it ready again. The node this dispatcher runs on is served
in-process (LocalSession) and is never declared down by itself. Leader-only.

A heartbeat never waits on the store: it moves the node's deadline in memory and answers;
only a node that was not ready (or moved) costs a write, made beside the answer. A node
down for `orphan_timeout` (24 h, as swarmkit) gets its unfinished tasks marked `orphaned`,
so no task whose node never returns stays non-terminal forever.

Only the leading dispatcher (the one whose `run` is running) serves sessions: a follower
would answer heartbeats the leader never sees. A follower refuses with the leader's address
in the message (`not_leader`), and the worker goes there next.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

import msgspec

from shoal.api.netview import network_view
from shoal.api.session import LEADER_AT
from shoal.api.states import is_terminal
from shoal.api.timefmt import now_rfc3339
from shoal.api.types import Node, TaskStatusInfo
from shoal.cluster.server import MEMBERS, Caller, ClusterServer
from shoal.cluster.wire import (
    Empty,
    HeartbeatResponse,
    NetworkPeer,
    NetworkService,
    SessionMessage,
    SessionRequest,
    StatusRequest,
)
from shoal.errors import NotFound, Unavailable
from shoal.manager.controlapi.swarm import heartbeat_period
from shoal.manager.dispatcher.blobs import BlobRefs, blob_refs, node_blobs
from shoal.manager.dispatcher.liveness import Liveness
from shoal.manager.dispatcher.ports import published_ports
from shoal.manager.dispatcher.session import LocalSession
from shoal.manager.issuer import manager_addrs
from shoal.manager.state.store import Commit, Event, Store, Tx

__all__ = ["LEADER_AT", "Dispatcher", "not_leader", "published_ports"]

log = logging.getLogger(__name__)
ORPHAN_TIMEOUT = 24 * 3600.0


class Dispatcher:
    def __init__(
        self,
        store: Store,
        local_node_id: str,
        clock: Callable[[], float] = time.monotonic,
        orphan_timeout: float = ORPHAN_TIMEOUT,
    ) -> None:
        self._store = store
        self._orphan_timeout = orphan_timeout
        self._down_since: dict[str, float] = {}
        self._writes: set[asyncio.Task[None]] = set()
        self.leading = False  # True while `run` runs (ClusterServices.lead)
        self._local = local_node_id
        self._clock = clock
        self.liveness = Liveness(self._period())
        self._wake = asyncio.Event()
        self.open_sessions = 0  # session streams being served now (read by observe.metrics)

    def register(self, server: ClusterServer) -> None:
        server.add_stream("Dispatcher/Session", SessionRequest, MEMBERS, self.session)
        server.add_unary("Dispatcher/UpdateTaskStatus", StatusRequest, MEMBERS, self.update_status)
        server.add_unary("Dispatcher/Heartbeat", Empty, MEMBERS, self.heartbeat)

    def _period(self) -> float:
        clusters = self._store.view().list("cluster")
        return heartbeat_period(clusters[0]) if clusters else 5.0

    def _member(self, caller: Caller) -> str:
        assert caller.identity is not None
        if not self.leading:
            raise not_leader(self._store)
        node_id = caller.identity.node_id
        if self._store.view().get("node", node_id) is None:
            raise NotFound(f"node {node_id} is not a member of this swarm (removed?)")
        return node_id

    # -- RPCs ---------------------------------------------------------------------------
    async def session(self, req: SessionRequest, caller: Caller) -> AsyncIterator[SessionMessage]:
        node_id = self._member(caller)
        log.info("dispatcher: session opened by node %s (%s)", node_id, caller.peer)
        await self._alive(node_id, req.addr, req.gossip_addr, req.resources)
        queue = self._store.watch()
        self.open_sessions += 1
        try:
            last = b""
            while True:
                message, refs = self._message(node_id)
                raw = msgspec.msgpack.encode(message)
                if raw != last:
                    last = raw
                    yield message
                while not _may_change(await _next_commit(queue), refs):
                    pass
                self._member(caller)
        finally:
            self.open_sessions -= 1
            self._store.unwatch(queue)
            log.info("dispatcher: session of node %s closed", node_id)

    def _message(self, node_id: str) -> tuple[SessionMessage, BlobRefs]:
        """The node's session message, and the blobs it refers to."""
        view = self._store.view()
        all_tasks = view.list("task")
        net = network_view(view.list("node"), view.list("cluster"), all_tasks,
                           view.list("service"))
        refs = blob_refs(view, node_id)
        secrets, configs, registry_auth = node_blobs(view, node_id, refs)
        return SessionMessage(
            tasks=sorted((t for t in all_tasks if t.node_id == node_id), key=lambda t: t.id),
            ports=published_ports(view.list("service")),
            managers=manager_addrs(self._store),
            heartbeat_period=self.liveness.period,
            peers=[NetworkPeer(p.node_id, p.addr, p.subnet, p.gossip) for p in net.peers],
            data_path_port=net.data_path_port,
            network_keys=list(net.keys),
            live=sorted(net.live),
            services=[NetworkService(r.service_id, r.name, r.network_id, r.vip, list(r.aliases))
                      for r in net.services],
            secrets=secrets,
            configs=configs,
            registry_auth=registry_auth,
        ), refs

    async def update_status(self, req: StatusRequest, caller: Caller) -> Empty:
        node_id = self._member(caller)
        await LocalSession(self._store, node_id).report(req.updates)
        return Empty()

    async def heartbeat(self, req: Empty, caller: Caller) -> HeartbeatResponse:
        node_id = self._member(caller)
        self.liveness.beat(node_id, self._clock())
        if self._needs_write(node_id, "", "", None):
            write = asyncio.create_task(self._alive(node_id, "", ""))
            self._writes.add(write)
            write.add_done_callback(self._writes.discard)
        return HeartbeatResponse(self.liveness.period)

    def _needs_write(
        self, node_id: str, addr: str, gossip_addr: str, resources: dict[str, int] | None
    ) -> bool:
        node: Node | None = self._store.view().get("node", node_id)
        if node is None:
            return False
        moved = bool(addr and node.status.addr != addr)
        gossip_moved = bool(gossip_addr and node.gossip_addr != gossip_addr)
        resized = bool(resources and node.description.resources != resources)
        return node.status.state != "ready" or moved or gossip_moved or resized

    async def _alive(
        self, node_id: str, addr: str, gossip_addr: str, resources: dict[str, int] | None = None
    ) -> None:
        self.liveness.beat(node_id, self._clock())
        self._wake.set()
        if not self._needs_write(node_id, addr, gossip_addr, resources):
            return

        def fn(tx: Tx) -> None:
            node: Node | None = tx.get("node", node_id)
            if node is None:
                return
            moved = bool(addr and node.status.addr != addr)
            gossip_moved = bool(gossip_addr and node.gossip_addr != gossip_addr)
            if resources and node.description.resources != resources:
                node.description.resources = dict(resources)  # what the scheduler places by
                tx.update("node", node)
            if node.status.state != "ready" or moved or gossip_moved:
                if node.status.state != "ready":
                    log.info("dispatcher: node %s is ready", node_id)
                node.status.state = "ready"
                node.status.message = ""
                node.status.addr = addr or node.status.addr
                node.gossip_addr = gossip_addr or node.gossip_addr
                tx.update("node", node)

        await self._store.update(fn)

    # -- liveness -----------------------------------------------------------------------
    async def run(self) -> None:
        """Mark nodes down when their heartbeats stop (leader only)."""
        queue = self._store.watch()
        self.leading = True
        try:
            while True:
                self._track_nodes()
                for node_id in self.liveness.expired(self._clock()):
                    await self._mark_down(node_id)
                for node_id in self._orphan_due(self._clock()):
                    await self._orphan_tasks(node_id)
                deadline = _earliest(self.liveness.next_deadline(), self._next_orphaning())
                timeout = None if deadline is None else max(deadline - self._clock(), 0.0) + 0.01
                self._wake.clear()
                await _first(queue, self._wake, timeout)
        finally:
            self.leading = False
            self._store.unwatch(queue)

    def _track_nodes(self) -> None:
        now = self._clock()
        period = self._period()
        if period != self.liveness.period:
            log.info("dispatcher: heartbeat period is now %.1fs", period)
            self.liveness.set_period(period, now)
        known = set()
        for node in self._store.view().list("node"):
            known.add(node.id)
            if node.status.state == "down":
                self._down_since.setdefault(node.id, now)
            else:
                self._down_since.pop(node.id, None)
            if node.id != self._local and node.status.state not in ("down", "disconnected"):
                self.liveness.track(node.id, now)
        for node_id in self.liveness.tracked():
            if node_id not in known:
                self.liveness.forget(node_id)
        for node_id in [n for n in self._down_since if n not in known]:
            del self._down_since[node_id]

    def _orphan_due(self, now: float) -> list[str]:
        due = sorted(n for n, t in self._down_since.items() if now - t >= self._orphan_timeout)
        for node_id in due:
            self._down_since[node_id] = float("inf")  # once per time down
        return due

    def _next_orphaning(self) -> float | None:
        pending = [t for t in self._down_since.values() if t != float("inf")]
        return min((t + self._orphan_timeout for t in pending), default=None)

    async def _orphan_tasks(self, node_id: str) -> None:
        def fn(tx: Tx) -> int:
            tasks = tx.find(
                "task", lambda t: t.node_id == node_id and not is_terminal(t.status.state)
            )
            for task in tasks:
                task.status = TaskStatusInfo(
                    timestamp=now_rfc3339(),
                    state="orphaned",
                    message="orphaned",
                    err="node has been down for too long",
                )
                tx.update("task", task)
            return len(tasks)

        count = await self._store.update(fn)
        log.warning("dispatcher: node %s is down for good: %d task(s) orphaned", node_id, count)

    async def _mark_down(self, node_id: str) -> None:
        def fn(tx: Tx) -> None:
            node: Node | None = tx.get("node", node_id)
            if node is not None and node.status.state != "down":
                node.status.state = "down"
                node.status.message = "heartbeat failure"
                tx.update("node", node)

        log.warning(
            "dispatcher: node %s missed its heartbeats for %.1fs: marking it down",
            node_id,
            self.liveness.grace,
        )
        await self._store.update(fn)




def not_leader(store: Store) -> Unavailable:
    """The refusal of a follower's dispatcher, naming the leader's 2377 address if known."""
    for node in store.view().list("node"):
        status = node.manager_status
        if status is not None and status.leader and status.addr:
            return Unavailable(f"this manager is not the leader; {LEADER_AT}{status.addr}")
    return Unavailable("this manager is not the leader")


async def _next_commit(queue: asyncio.Queue[Event | Commit]) -> list[Event | Commit]:
    """Wait for a commit, then take every event already queued behind it: a session that
    fell behind a burst of commits builds one message for all of them, not one each.
    Returns what it took."""
    taken: list[Event | Commit] = []
    while not isinstance(item := await queue.get(), Commit):
        taken.append(item)
    taken.append(item)
    await asyncio.sleep(0)  # commits made in this loop turn join the same message
    while not queue.empty():
        taken.append(queue.get_nowait())
    return taken


def _may_change(taken: list[Event | Commit], refs: BlobRefs) -> bool:
    """Whether commits may change a session message: all but those that only wrote
    secrets or configs the node does not use (a commit without events is a reloaded
    state: it may)."""
    events = [e for e in taken if isinstance(e, Event)]
    if not events:
        return True
    secret_ids, config_ids, _ = refs
    for event in events:
        if event.kind == "secret" and event.obj.id not in secret_ids:
            continue
        if event.kind == "config" and event.obj.id not in config_ids:
            continue
        return True
    return False


def _earliest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


async def _first(
    queue: asyncio.Queue[Event | Commit], wake: asyncio.Event, timeout: float | None
) -> None:
    """Return at the next commit, wake-up or timeout, whichever comes first."""
    getter = asyncio.ensure_future(queue.get())
    waker = asyncio.ensure_future(wake.wait())
    try:
        await asyncio.wait({getter, waker}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        getter.cancel()
        waker.cancel()
    while not queue.empty():
        queue.get_nowait()
