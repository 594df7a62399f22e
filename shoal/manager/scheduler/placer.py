"""PURE: places the pending tasks of one service that share one spec, exactly as calling
`scheduler.pick_node` once per task would, at O(log nodes) a placement instead of
O(nodes x filters).

Why it is the same choice: `pick_node` takes, among the nodes every filter accepts, the
least by (tasks of the service, tasks in all, node ID). Within one group (one service, one
spec) the static filters (ready, availability, constraints) give the same answer for every
task, so they run once per node; the two that change as tasks are placed only ever turn a
node *down* (max replicas: its count of the service only grows; resources: what it has
reserved only grows, the spec's reservation stays the same), so a node refused once is
dropped for good. A heap holds the accepted nodes by their key; a placement changes the key
of the node placed on only, which goes back with its new key. A test places random
clusters with both and compares every task.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping, Sequence

from shoal.api.types import Node, TaskSpec
from shoal.manager.scheduler.filters import (
    FILTERS,
    MaxReplicasFilter,
    Reserved,
    ResourceFilter,
)

__all__ = ["GroupPlacer"]

_STATIC = tuple(f for f in FILTERS if not isinstance(f, MaxReplicasFilter))
_MAX_REPLICAS = MaxReplicasFilter()


class GroupPlacer:
    """`place()` picks the node of the group's next task (None: no node fits) and counts
    the task there in `per_service` and `total` (the caller's counters, shared with the
    pass); the caller adds its reservation to `reserved`."""

    def __init__(
        self,
        service_id: str,
        spec: TaskSpec,
        nodes: Sequence[Node],
        per_service: Counter[tuple[str, str]],
        total: Counter[str],
        reserved: Mapping[str, Reserved],
    ) -> None:
        self.service_id = service_id
        self.spec = spec
        self._nodes = nodes
        self._per_service = per_service
        self._total = total
        self._resources = ResourceFilter(reserved)
        self._heap = [
            (per_service[(n.id, service_id)], total[n.id], n.id, i)
            for i, n in enumerate(nodes)
            if all(f.check(n, spec, 0) for f in _STATIC)
        ]
        heapq.heapify(self._heap)

    def place(self) -> Node | None:
        heap = self._heap
        while heap:
            on_node, in_all, node_id, index = heap[0]
            node = self._nodes[index]
            if not _MAX_REPLICAS.check(node, self.spec, on_node) or not self._resources.check(
                node, self.spec, on_node
            ):
                heapq.heappop(heap)  # refused now: refused for the rest of the group
                continue
            heapq.heapreplace(heap, (on_node + 1, in_all + 1, node_id, index))
            self._per_service[(node_id, self.service_id)] += 1
            self._total[node_id] += 1
            return node
        return None
