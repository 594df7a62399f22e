"""`ManagerSession`: the AgentSession of a manager's own agent, leader or not.

Assignments come from the local store (replicated by Raft, so a follower sees its tasks as
soon as they are committed). Status reports and heartbeats are writes: on the leader they
go into the store directly (LocalSession); on a follower they go to the leader's
dispatcher over 2377, like a worker's, so the leader sees this node alive and records its
tasks' states. Reports made while no leader answers are kept (latest per task) and sent
later, so a state change is never lost; heartbeats follow the dispatcher's period.
While following, the node also serves the leader's log subscriptions for its tasks
(shoal.agent.log_publisher over the leader's 2377); the leader reads its own in-process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from shoal.agent.log_publisher import LogPublisher
from shoal.agent.secrets import AssignedSecrets
from shoal.api.latency import LatencyRecord
from shoal.api.session import StatusUpdate
from shoal.api.types import Task
from shoal.cluster.client import ClusterClient
from shoal.cluster.wire import Empty, HeartbeatResponse, StatusRequest
from shoal.errors import ShoalError, Unavailable
from shoal.manager.controlapi.swarm import heartbeat_period
from shoal.manager.dispatcher.session import LocalSession
from shoal.manager.raft_role import RaftRole
from shoal.manager.state.store import Store
from shoal.wakeups import sleep_on_grid

__all__ = ["ManagerSession"]

log = logging.getLogger(__name__)


class ManagerSession:
    def __init__(
        self, store: Store, node_id: str, raft: RaftRole,
        log_path: Callable[[str], Path] | None = None,
    ) -> None:
        self._store = store
        self.logs = LogPublisher(log_path) if log_path is not None else None
        self.secrets = AssignedSecrets()  # this node's secrets/configs, in memory only
        self._local = LocalSession(store, node_id, on_blobs=lambda b: self.secrets.set(*b))
        self._raft = raft
        self._pending: dict[str, StatusUpdate] = {}
        self._flush_lock = asyncio.Lock()
        self._kept = asyncio.Event()  # reports kept after a failed flush: retry them
        self._closed = asyncio.Event()
        self.heartbeat_latency = LatencyRecord()  # heartbeats to a remote leader (metrics)

    def close(self) -> None:
        """Swarm leave: assign nothing from now on (the agent stops what it runs)."""
        self._closed.set()

    async def assignments(self) -> AsyncIterator[list[Task]]:
        source = self._local.assignments()
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            while True:
                nxt = asyncio.ensure_future(anext(source))
                await asyncio.wait({nxt, closed}, return_when=asyncio.FIRST_COMPLETED)
                if closed.done():
                    nxt.cancel()
                    yield []
                    await asyncio.Event().wait()  # nothing more, ever
                yield nxt.result()
        finally:
            closed.cancel()

    async def report(self, updates: list[StatusUpdate]) -> None:
        for update in updates:
            self._pending[update.task_id] = update
        await self._flush()

    async def heartbeat(self) -> None:
        """The agent's own heartbeats: the leader marks itself ready (run() does the rest)."""
        if self._raft.is_leader:
            try:
                await self._local.heartbeat()
            except Unavailable:
                pass

    async def _flush(self) -> None:
        async with self._flush_lock:
            if not self._pending:
                return
            batch = list(self._pending.values())
            try:
                if self._raft.is_leader:
                    try:
                        await self._local.report(batch)
                    except Unavailable:
                        await self._remote(batch)
                else:
                    await self._remote(batch)
            except Unavailable as exc:
                log.info("manager session: %d status report(s) kept: %s", len(batch), exc)
                self._kept.set()
                return
            for update in batch:
                if self._pending.get(update.task_id) is update:
                    del self._pending[update.task_id]

    async def _remote(self, batch: list[StatusUpdate]) -> None:
        await self._raft.call_leader("Dispatcher/UpdateTaskStatus", StatusRequest(batch), Empty)

    def _period(self) -> float:
        clusters = self._store.view().clusters.list()
        return heartbeat_period(clusters[0]) if clusters else 5.0

    async def run(self) -> None:
        """Heartbeats to the leader while following, and kept reports retried, each in a
        loop of its own: a report flush that waits on a slow leader (seconds, in a task
        burst) must not hold the next heartbeat back (the node would be marked down)."""
        retries = asyncio.create_task(self._retry_kept(), name="manager-session-reports")
        logs = asyncio.create_task(self._serve_logs(), name="manager-session-logs")
        try:
            await self._heartbeats()
        finally:
            retries.cancel()
            logs.cancel()
            await asyncio.gather(retries, logs, return_exceptions=True)

    async def _serve_logs(self) -> None:
        """While following: the leader's log subscriptions, on its 2377 (one stream, no
        wake-ups while it lasts; looked at again on the 1 s grid after it ends)."""
        publisher = self.logs
        if publisher is None:
            return

        async def serve(client: ClusterClient) -> bool:
            await publisher.serve(client)
            return True

        raft = self._raft
        while True:
            # checked on the tickers' grid: no wake-up of its own while leading
            await sleep_on_grid(1.0)
            if raft.is_leader or not raft.node.leader_id:
                continue
            try:
                await raft.on_leader(serve, "log subscriptions")
            except ShoalError:
                pass

    async def _heartbeats(self) -> None:
        """Until a heartbeat gets through (no leader known yet, or it failed) it retries
        quickly."""
        while True:
            beat = self._raft.is_leader
            if not beat and self._raft.node.leader_id:
                start = asyncio.get_running_loop().time()
                try:
                    await self._raft.call_leader("Dispatcher/Heartbeat", Empty(), HeartbeatResponse)
                    self.heartbeat_latency.observe(asyncio.get_running_loop().time() - start)
                    beat = True
                except Unavailable as exc:
                    log.info("manager session: heartbeat to the leader failed: %s", exc.message)
            await sleep_on_grid(self._period() if beat else min(self._period(), 0.5))

    async def _retry_kept(self) -> None:
        """Every 0.5 s while reports are kept, asleep otherwise (an idle manager woke for
        this twice a second)."""
        while True:
            await self._kept.wait()
            await sleep_on_grid(0.5)  # with the tickers' wake-up, not one of its own
            if self._pending:
                await self._flush()
            if not self._pending:
                self._kept.clear()
