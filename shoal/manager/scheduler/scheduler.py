"""The scheduler: assigns unassigned tasks to nodes.

Filters first (filters.py; resources by reservation against what each node reports); among
the nodes left, spread: fewest tasks of the same service, then fewest tasks overall, then
node ID for a stable order. A task that fits nowhere stays pending with the reason.
"""

from __future__ import annotations

import logging
from collections import Counter

from shoal.api.states import TaskState, is_terminal, rank
from shoal.api.timefmt import now_rfc3339
from shoal.api.types import Node, Task
from shoal.manager.orchestrator.tasks import is_current
from shoal.manager.reconciler import Reconciler
from shoal.manager.scheduler.filters import (
    Reserved,
    explain_no_fit,
    filters_for,
    reservation_of,
)
from shoal.manager.state.store import Tx

__all__ = ["Scheduler", "pick_node"]

log = logging.getLogger(__name__)


def pick_node(
    task: Task,
    nodes: list[Node],
    per_service: Counter[tuple[str, str]],
    total: Counter[str],
    reserved: dict[str, Reserved] | None = None,
) -> Node | None:
    filters = filters_for(reserved)
    fits = [
        n
        for n in nodes
        if all(f.check(n, task.spec, per_service[(n.id, task.service_id)]) for f in filters)
    ]
    if not fits:
        return None
    return min(fits, key=lambda n: (per_service[(n.id, task.service_id)], total[n.id], n.id))


class Scheduler(Reconciler):
    name = "scheduler"

    async def reconcile(self) -> float | None:
        await self.store.update(self._pass)
        return None

    def _pass(self, tx: Tx) -> None:
        nodes = sorted(tx.list("node"), key=lambda n: n.id)
        tasks = tx.list("task")
        per_service: Counter[tuple[str, str]] = Counter()
        total: Counter[str] = Counter()
        reserved: dict[str, Reserved] = {}
        for t in tasks:
            if t.node_id and is_current(t):
                per_service[(t.node_id, t.service_id)] += 1
                total[t.node_id] += 1
            if t.node_id and not is_terminal(t.status.state):
                reserved[t.node_id] = reserved.get(t.node_id, Reserved()) + reservation_of(t.spec)
        pending = [
            t
            for t in tasks
            if not t.node_id and rank(t.status.state) <= TaskState.PENDING and is_current(t)
        ]
        for task in sorted(pending, key=lambda t: (t.service_id, t.slot)):
            node = pick_node(task, nodes, per_service, total, reserved)
            if node is None:
                on_node = {n.id: per_service[(n.id, task.service_id)] for n in nodes}
                reason = explain_no_fit(nodes, task.spec, on_node, reserved)
                if task.status.err != reason or task.status.state != "pending":
                    task.status.state = "pending"
                    task.status.err = reason
                    task.status.message = "pending task scheduling"
                    task.status.timestamp = now_rfc3339()
                    tx.update("task", task)
                continue
            per_service[(node.id, task.service_id)] += 1
            total[node.id] += 1
            reserved[node.id] = reserved.get(node.id, Reserved()) + reservation_of(task.spec)
            task.node_id = node.id
            task.status.state = "assigned"
            task.status.err = ""
            task.status.message = "scheduler assigned task to node"
            task.status.timestamp = now_rfc3339()
            tx.update("task", task)
        # tasks of a global service carry their node from birth: just move them on
        for task in tasks:
            if task.node_id and task.status.state in ("new", "pending") and is_current(task):
                task.status.state = "assigned"
                task.status.message = "scheduler assigned task to node"
                task.status.timestamp = now_rfc3339()
                tx.update("task", task)
