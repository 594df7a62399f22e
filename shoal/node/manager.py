"""The manager role on this node: leader-only reconcilers, started and stopped in one place.

With the local log this node is always the leader of its own swarm; with Raft,
`become_leader`/`become_follower` will be called on leadership changes.
"""

from __future__ import annotations

import asyncio
import logging

from shoal.manager.netview.keys import KeyManager
from shoal.manager.orchestrator.reaper import TaskReaper
from shoal.manager.orchestrator.replicated import Orchestrator
from shoal.manager.reconciler import Reconciler
from shoal.manager.scheduler.scheduler import Scheduler
from shoal.manager.state.store import Store

__all__ = ["Manager"]

log = logging.getLogger(__name__)


class Manager:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._tasks: list[asyncio.Task[None]] = []
        self.reconcilers: list[Reconciler] = []

    def become_leader(self) -> None:
        if self._tasks:
            return
        log.info("manager: became leader, starting orchestrator, scheduler, reaper, keymanager")
        self.reconcilers = [
            Orchestrator(self.store),
            Scheduler(self.store),
            TaskReaper(self.store),
            KeyManager(self.store),
        ]
        self._tasks = [asyncio.create_task(r.run(), name=r.name) for r in self.reconcilers]

    async def become_follower(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
