"""The task reaper: deletes tasks nobody needs any more.

Tasks marked for removal (their service is gone) once they have stopped, and a slot's history
beyond the swarm's TaskHistoryRetentionLimit (oldest first, never a task that may still run).
"""

from __future__ import annotations

from collections import defaultdict

from shoal.api.states import TaskState, is_terminal, rank
from shoal.api.types import Task
from shoal.manager.reconciler import Reconciler
from shoal.manager.state.store import Tx

__all__ = ["TaskReaper"]


class TaskReaper(Reconciler):
    name = "reaper"
    kinds = frozenset({"cluster", "node", "task"})

    async def reconcile(self) -> float | None:
        await self.store.update(self._pass)
        return None

    def _pass(self, tx: Tx) -> None:
        clusters = tx.list("cluster")
        limit = 5
        if clusters and clusters[0].spec.orchestration is not None:
            configured = clusters[0].spec.orchestration.task_history_retention_limit
            limit = 5 if configured is None else configured
        nodes = {n.id for n in tx.scan("node")}
        history: dict[tuple[str, int, str], list[Task]] = defaultdict(list)
        for task in tx.scan("task"):  # read only: tasks are deleted by ID
            stopped = is_terminal(task.status.state) or task.node_id not in nodes
            if task.desired_state == "remove" and (stopped or not task.node_id):
                tx.delete("task", task.id)
                continue
            key = (task.service_id, task.slot, task.node_id if task.slot == 0 else "")
            history[key].append(task)
        for tasks in history.values():
            old = [
                t
                for t in tasks
                if rank(t.desired_state) >= TaskState.SHUTDOWN and is_terminal(t.status.state)
            ]
            old.sort(key=lambda t: t.version.index)
            for task in old[: max(len(old) - limit, 0)]:
                tx.delete("task", task.id)
