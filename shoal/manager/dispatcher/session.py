"""The agent's session with the dispatcher, served in-process from the store.

The contract (`AgentSession`, `StatusUpdate`) lives in `shoal.api.session`; `LocalSession`
serves it to a node that is its own manager, the 2377 dispatcher serves the same contract
to remote workers, so the agent does not change when it moves to another host.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from shoal.api.session import StatusUpdate
from shoal.api.states import check_transition
from shoal.api.types import Task
from shoal.errors import ShoalError
from shoal.manager.dispatcher.blobs import BlobRefs, NodeBlobs, blob_refs, node_blobs, touches
from shoal.manager.state.store import Commit, Event, Store, Tx

__all__ = ["LocalSession"]

log = logging.getLogger(__name__)


class LocalSession:
    def __init__(
        self, store: Store, node_id: str, on_blobs: Callable[[NodeBlobs], None] | None = None
    ) -> None:
        self._store = store
        self._node_id = node_id
        # the node's own secrets/configs/credentials, after each change (see blobs.py)
        self._on_blobs = on_blobs

    async def assignments(self) -> AsyncIterator[list[Task]]:
        """The node's tasks, again after every commit that may change them or its blobs
        (commits of other nodes' tasks, of unused secrets and such are skipped: on a
        manager under writes this pass ran per commit over every task and secret)."""
        queue = self._store.watch()
        try:
            last: list[tuple[str, int]] | None = None
            while True:
                view = self._store.view()
                tasks = view.find("task", lambda t: t.node_id == self._node_id)
                key = sorted((t.id, t.version.index) for t in tasks)
                refs = blob_refs(view, self._node_id)
                if self._on_blobs is not None:
                    self._on_blobs(node_blobs(view, self._node_id, refs))
                if key != last:
                    last = key
                    yield tasks
                while not await self._relevant_commit(queue, refs):
                    pass
        finally:
            self._store.unwatch(queue)

    async def _relevant_commit(self, queue: asyncio.Queue[Event | Commit],
                               refs: BlobRefs) -> bool:
        """Wait for the next commit; whether it may concern this node (a commit with no
        events is a reloaded state: it may)."""
        events: list[Event] = []
        while not isinstance(item := await queue.get(), Commit):
            events.append(item)
        return not events or touches(events, self._node_id, refs)

    async def report(self, updates: list[StatusUpdate]) -> None:
        def fn(tx: Tx) -> None:
            for update in updates:
                task: Task | None = tx.get("task", update.task_id)
                if task is None or task.node_id != self._node_id:
                    continue
                if update.status.state == task.status.state and not update.address:
                    continue
                try:
                    check_transition(task.status.state, update.status.state)
                except ShoalError:
                    log.error(
                        "task %s: agent reported %s after %s; refused",
                        task.id,
                        update.status.state,
                        task.status.state,
                    )
                    raise
                task.status = update.status
                if update.address:
                    task.address = update.address
                tx.update("task", task)

        await self._store.update(fn)

    async def heartbeat(self) -> None:
        def fn(tx: Tx) -> None:
            node = tx.get("node", self._node_id)
            if node is not None and node.status.state != "ready":
                node.status.state = "ready"
                node.status.message = ""
                tx.update("node", node)

        await self._store.update(fn)
