"""The log broker: `service logs` / `task logs` from every node, through the leader.

As swarmkit's LogBroker: a subscription (an ID, the selected tasks, the options) is made on
the leader; each node that holds some of those tasks is told over its subscription stream
(`LogBroker/ListenSubscriptions`, opened by the node beside its dispatcher session), reads
its local files (shoal.agent.log_publisher) and publishes the lines back
(`LogBroker/PublishLogs`, a client stream), then a "done" marker unless following. The
leader's own tasks are read in-process. A ready node that does not listen yet (its session
just opened) is waited for up to `LISTEN_GRACE` (3 s). A node that is down, not listening,
or silent for `idle_timeout` while not following is given up: its lines are missing (the
API then warns "incomplete log stream"), nothing waits on it for ever. With `follow` the
task set is scanned again every `rescan` seconds: new tasks are sent to their nodes, and a
node that listens anew (its session came back) is sent all its tasks again. When the
subscriber goes away (its HTTP client closed), every node is told to stop (`close`).

A follower manager asked for logs relays to the leader (`LogBroker/SubscribeLogs`, a
server stream, managers only). Leader-only: the calls of a follower's broker are refused
with the leader's address (as the dispatcher's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from shoal import timeouts
from shoal.api.types import Task
from shoal.cluster.server import MANAGERS, MEMBERS, Caller, ClusterServer
from shoal.cluster.wire import (
    Empty,
    LogBatch,
    LogEntry,
    LogsRequest,
    LogSubscription,
    PublishLogsRequest,
)
from shoal.manager.dispatcher.dispatcher import not_leader
from shoal.manager.state.store import Store

__all__ = ["IDLE_TIMEOUT", "LocalReader", "LogBroker", "missing_warning"]

log = logging.getLogger(__name__)

IDLE_TIMEOUT = 10.0  # not following: a node that sends nothing for this long is given up
LISTEN_GRACE = 3.0  # a ready node not listening yet (its session just opened) is waited for
RESCAN = 1.0  # following: how often new tasks of the subscription are looked for
_QUEUE = 64  # batches queued per subscription before publishers wait (backpressure)


def missing_warning(nodes: list[str]) -> str:
    reasons = ", ".join(f"node {n} is not available" for n in nodes)
    return (
        "Warning: incomplete log stream. some logs could not be retrieved for the following "
        f"reasons: {reasons}"
    )


class LocalReader(Protocol):
    """This node's own tasks' lines for a subscription (the node sets the factory:
    shoal.agent.log_publisher.SubscriptionReader, the reader its publisher uses)."""

    def add(self, task_ids: Iterable[str]) -> None: ...
    def batches(self) -> AsyncIterator[list[LogEntry]]: ...


@dataclass
class _Sub:
    id: str
    req: LogsRequest
    queue: asyncio.Queue[tuple[str, str, list[LogEntry]]]
    tasks: dict[str, set[str]] = field(default_factory=dict)  # node -> task IDs sent
    pending: set[str] = field(default_factory=set)  # nodes whose "done" has not come
    missing: set[str] = field(default_factory=set)
    # remote nodes told about it, and the listener that was told (a node that listens
    # again while following is told again, all its tasks)
    told: dict[str, asyncio.Queue[LogSubscription | None]] = field(default_factory=dict)
    nodes: dict[str, str] = field(default_factory=dict)  # task -> node
    services: dict[str, str] = field(default_factory=dict)  # task -> service
    local: LocalReader | None = None
    local_task: asyncio.Task[None] | None = None

    def message(self, node_id: str, close: bool = False) -> LogSubscription:
        r = self.req
        return LogSubscription(
            self.id, sorted(self.tasks.get(node_id, ())), r.follow, r.tail, r.since,
            list(r.streams), close,
        )  # fmt: skip


class LogBroker:
    def __init__(
        self,
        store: Store,
        local_node_id: str,
        leading: Callable[[], bool],
        local_reader: Callable[[LogSubscription], LocalReader] | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
        rescan: float = RESCAN,
        listen_grace: float = LISTEN_GRACE,
    ) -> None:
        self._store = store
        self._local = local_node_id
        self._leading = leading
        self.local_reader = local_reader  # this node's task logs (None: its lines are missing)
        self.idle_timeout = idle_timeout
        self.rescan = rescan
        self.listen_grace = listen_grace
        self._listeners: dict[str, asyncio.Queue[LogSubscription | None]] = {}
        self._joined = asyncio.Event()  # set (and replaced) when a node starts listening
        self.subscriptions: dict[str, _Sub] = {}

    def register(self, server: ClusterServer) -> None:
        server.add_stream("LogBroker/ListenSubscriptions", Empty, MEMBERS, self.listen)
        server.add_client_stream(
            "LogBroker/PublishLogs", PublishLogsRequest, MEMBERS, self.publish
        )
        server.add_stream("LogBroker/SubscribeLogs", LogsRequest, MANAGERS, self.relay)

    def listening(self) -> set[str]:
        return set(self._listeners)

    def _check_leading(self) -> None:
        if not self._leading():
            raise not_leader(self._store)

    def _node_of(self, caller: Caller) -> str:
        assert caller.identity is not None
        self._check_leading()
        return caller.identity.node_id

    # -- the nodes' side ----------------------------------------------------------------
    async def listen(self, req: Empty, caller: Caller) -> AsyncIterator[LogSubscription]:
        node_id = self._node_of(caller)
        queue: asyncio.Queue[LogSubscription | None] = asyncio.Queue()
        old = self._listeners.get(node_id)
        if old is not None:
            old.put_nowait(None)  # a node listens once: the newer stream wins
        self._listeners[node_id] = queue
        self._joined.set()
        self._joined = asyncio.Event()
        try:
            while (message := await queue.get()) is not None:
                yield message
        finally:
            if self._listeners.get(node_id) is queue:
                del self._listeners[node_id]
                for sub in self.subscriptions.values():
                    if sub.told.get(node_id) is queue:
                        with contextlib.suppress(asyncio.QueueFull):
                            sub.queue.put_nowait(("gone", node_id, []))

    async def publish(self, requests: AsyncIterator[PublishLogsRequest], caller: Caller) -> Empty:
        node_id = self._node_of(caller)
        async for req in requests:
            sub = self.subscriptions.get(req.subscription_id)
            if sub is None:
                return Empty()  # over (the subscriber went away): the node stops
            allowed = sub.tasks.get(node_id, set())
            entries = [e for e in req.entries if e.task_id in allowed]
            if len(entries) != len(req.entries):
                log.warning("logs: node %s published lines of tasks not asked of it: dropped",
                            node_id)  # fmt: skip
            if entries:
                await sub.queue.put(("lines", node_id, entries))
            if req.close:
                await sub.queue.put(("done", node_id, []))
                return Empty()
        return Empty()

    # -- the subscribers' side ----------------------------------------------------------
    async def relay(self, req: LogsRequest, caller: Caller) -> AsyncIterator[LogBatch]:
        """SubscribeLogs: a follower manager's subscription on behalf of its client."""
        self._node_of(caller)
        async for batch in self.subscribe(req):
            yield batch

    async def subscribe(self, req: LogsRequest) -> AsyncIterator[LogBatch]:
        """Every line of the selected tasks, from every node (see the module's doc)."""
        self._check_leading()
        sub = _Sub(secrets.token_hex(12), req, asyncio.Queue(maxsize=_QUEUE))
        self.subscriptions[sub.id] = sub
        loop = asyncio.get_running_loop()
        try:
            await self._await_listeners(req)
            missing = self._assign(sub)
            if missing:
                yield LogBatch(missing=missing)
            next_scan = loop.time() + self.rescan
            while req.follow or sub.pending:
                wait = max(next_scan - loop.time(), 0.0) if req.follow else self.idle_timeout
                try:
                    kind, node, entries = await timeouts.wait_for(sub.queue.get(), wait)
                except TimeoutError:
                    if not req.follow:
                        given_up = sorted(sub.pending)
                        log.warning("logs: no lines from node(s) %s for %.0fs: given up",
                                    ", ".join(given_up), self.idle_timeout)  # fmt: skip
                        yield LogBatch(missing=given_up)
                        return
                    kind, node, entries = "", "", []
                if kind == "lines":
                    tasks = {e.task_id for e in entries}
                    yield LogBatch(
                        entries,
                        nodes={t: sub.nodes.get(t, node) for t in tasks},
                        services={t: sub.services.get(t, "") for t in tasks},
                    )
                elif kind in ("done", "gone") and node in sub.pending:
                    sub.pending.discard(node)
                    if kind == "gone":
                        sub.missing.add(node)
                        yield LogBatch(missing=[node])
                if req.follow and loop.time() >= next_scan:
                    next_scan = loop.time() + self.rescan
                    missing = self._assign(sub)
                    if missing:
                        yield LogBatch(missing=missing)
        finally:
            await self._end(sub)

    async def _await_listeners(self, req: LogsRequest) -> None:
        """Wait (at most `listen_grace`) for the ready nodes of the tasks that do not listen
        yet: a node whose session just opened subscribes a moment later."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.listen_grace
        while True:
            view = self._store.view()
            waiting = set()
            for task in self._select(req):
                node = view.nodes.get(task.node_id) if task.node_id else None
                if (node is not None and node.id != self._local
                        and node.status.state == "ready" and node.id not in self._listeners):
                    waiting.add(node.id)
            left = deadline - loop.time()
            if not waiting or left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await timeouts.wait_for(self._joined.wait(), left)

    def _select(self, req: LogsRequest) -> list[Task]:
        view = self._store.view()
        if req.task_id:
            task = view.tasks.get(req.task_id)
            return [task] if task is not None else []
        return view.tasks.find(lambda t: t.service_id == req.service_id)

    def _assign(self, sub: _Sub) -> list[str]:
        """Hand the subscription's tasks not handed yet to their nodes (all of a node's
        tasks to a node listening anew); the nodes newly found missing (not listening:
        down, disconnected, an older version)."""
        want: dict[str, set[str]] = {}
        for task in self._select(sub.req):
            if not task.node_id:
                continue
            sub.nodes[task.id] = task.node_id
            sub.services[task.id] = task.service_id
            want.setdefault(task.node_id, set()).add(task.id)
        missing = []
        for node_id, task_ids in sorted(want.items()):
            known = sub.tasks.setdefault(node_id, set())
            fresh = sorted(task_ids - known)
            if node_id == self._local and self.local_reader is not None:
                if fresh:
                    known.update(fresh)
                    self._read_local(sub, fresh)
                continue
            listener = self._listeners.get(node_id)
            if listener is None:
                if node_id not in sub.missing:
                    sub.missing.add(node_id)
                    missing.append(node_id)
                continue
            if sub.told.get(node_id) is listener and not fresh:
                continue
            known.update(task_ids)
            sub.told[node_id] = listener
            sub.missing.discard(node_id)
            sub.pending.add(node_id)
            listener.put_nowait(sub.message(node_id))
        return missing

    def _read_local(self, sub: _Sub, task_ids: list[str]) -> None:
        if sub.local is not None:
            sub.local.add(task_ids)
            return
        assert self.local_reader is not None
        reader = self.local_reader(sub.message(self._local))
        sub.local = reader
        sub.pending.add(self._local)

        async def pump() -> None:
            async for batch in reader.batches():
                await sub.queue.put(("lines", self._local, batch))
            await sub.queue.put(("done", self._local, []))

        sub.local_task = asyncio.create_task(pump(), name=f"logs-local-{sub.id[:8]}")

    async def _end(self, sub: _Sub) -> None:
        self.subscriptions.pop(sub.id, None)
        for node_id, told in sub.told.items():
            listener = self._listeners.get(node_id)
            if listener is told:
                listener.put_nowait(sub.message(node_id, close=True))
        while not sub.queue.empty():  # publishers waiting on a full queue go on, see the end
            sub.queue.get_nowait()
        if sub.local_task is not None:
            sub.local_task.cancel()
            await asyncio.gather(sub.local_task, return_exceptions=True)
