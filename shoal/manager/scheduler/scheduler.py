"""The scheduler: assigns unassigned tasks to nodes.

Filters first (filters.py; resources by reservation against what each node reports); among
the nodes left, spread: fewest tasks of the same service, then fewest tasks overall, then
node ID for a stable order. A task that fits nowhere stays pending with the reason.

A pass places the pending tasks of a service that share a spec with one `GroupPlacer`
(placer.py: a heap of the nodes the filters accept, O(log nodes) a placement); it chooses
exactly what `pick_node` (the plain form, kept as the reference) chooses task by task.
"""

from __future__ import annotations

import logging
from collections import Counter

from shoal.api.codec import clone
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
from shoal.manager.scheduler.placer import GroupPlacer
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
    kinds = frozenset({"node", "task"})

    async def reconcile(self) -> float | None:
        await self.store.update(self._pass)
        return None

    def _pass(self, tx: Tx) -> None:
        nodes = sorted(tx.scan("node"), key=lambda n: n.id)  # read only
        # shallow copies (`Tx.scan`): a task whose status changes is cloned first
        tasks = tx.scan("task")
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
        placer: GroupPlacer | None = None
        no_fit = ""  # why the current group's last task fit nowhere (nothing changed since)
        for task in sorted(pending, key=lambda t: (t.service_id, t.slot)):
            if placer is None or placer.service_id != task.service_id or placer.spec != task.spec:
                placer = GroupPlacer(task.service_id, task.spec, nodes, per_service, total,
                                     reserved)
                no_fit = ""
            node = placer.place()
            if node is None:
                if not no_fit:
                    on_node = {n.id: per_service[(n.id, task.service_id)] for n in nodes}
                    no_fit = explain_no_fit(nodes, task.spec, on_node, reserved)
                reason = no_fit
                if task.status.err != reason or task.status.state != "pending":
                    task = clone(task)
                    task.status.state = "pending"
                    task.status.err = reason
                    task.status.message = "pending task scheduling"
                    task.status.timestamp = now_rfc3339()
                    tx.update("task", task)
                continue
            reserved[node.id] = reserved.get(node.id, Reserved()) + reservation_of(task.spec)
            task = clone(task)
            task.node_id = node.id
            task.status.state = "assigned"
            task.status.err = ""
            task.status.message = "scheduler assigned task to node"
            task.status.timestamp = now_rfc3339()
            tx.update("task", task)
        # tasks of a global service carry their node from birth: just move them on
        for task in tasks:
            if task.node_id and task.status.state in ("new", "pending") and is_current(task):
                task = clone(task)
                task.status.state = "assigned"
                task.status.message = "scheduler assigned task to node"
                task.status.timestamp = now_rfc3339()
                tx.update("task", task)
