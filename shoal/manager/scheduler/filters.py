"""Scheduling filters: pure. Each `check`s a node for a task and `explain`s a refusal.

`explain` texts follow swarmkit's, so a task that fits nowhere says why in `service ps`:
"no suitable node (1 node not available for new tasks; 2 nodes not ready)".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from shoal.api.types import Node, Service, TaskSpec

__all__ = [
    "FILTERS",
    "Filter",
    "explain_no_fit",
    "match_constraint",
    "node_is_eligible",
]


class Filter(Protocol):
    def check(self, node: Node, spec: TaskSpec, on_node: int) -> bool: ...

    def explain(self, count: int) -> str: ...


def _plural(count: int) -> str:
    return "1 node" if count == 1 else f"{count} nodes"


class ReadyFilter:
    def check(self, node: Node, spec: TaskSpec, on_node: int) -> bool:
        return node.status.state == "ready"

    def explain(self, count: int) -> str:
        return f"{_plural(count)} not ready"


class AvailabilityFilter:
    def check(self, node: Node, spec: TaskSpec, on_node: int) -> bool:
        return node.spec.availability in ("", "active")

    def explain(self, count: int) -> str:
        return f"{_plural(count)} not available for new tasks"


def match_constraint(node: Node, expr: str) -> bool:
    op = "==" if "==" in expr else "!="
    key, _, want = (part.strip() for part in expr.partition(op))
    if key == "node.id":
        have: str | None = node.id
    elif key == "node.hostname":
        have = node.description.hostname
    elif key == "node.role":
        have = node.spec.role
    elif key.startswith("node.labels."):
        have = (node.spec.labels or {}).get(key[len("node.labels.") :])
    elif key.startswith("engine.labels."):
        have = ((node.description.engine or {}).get("Labels") or {}).get(key[14:])
    elif key == "node.platform.os":
        have = (node.description.platform or {}).get("OS")
    elif key == "node.platform.arch":
        have = (node.description.platform or {}).get("Architecture")
    else:
        have = None
    equal = have is not None and have.lower() == want.lower()
    return equal if op == "==" else not equal


class ConstraintFilter:
    def check(self, node: Node, spec: TaskSpec, on_node: int) -> bool:
        constraints = spec.placement.constraints if spec.placement else None
        return all(match_constraint(node, c) for c in constraints or [])

    def explain(self, count: int) -> str:
        return f"scheduling constraints not satisfied on {_plural(count)}"


class MaxReplicasFilter:
    def check(self, node: Node, spec: TaskSpec, on_node: int) -> bool:
        limit = spec.placement.max_replicas if spec.placement else 0
        return not limit or on_node < limit

    def explain(self, count: int) -> str:
        return f"max replicas per node limit exceed on {_plural(count)}"


FILTERS: tuple[Filter, ...] = (
    ReadyFilter(),
    AvailabilityFilter(),
    ConstraintFilter(),
    MaxReplicasFilter(),
)


def node_is_eligible(node: Node, service: Service) -> bool:
    spec = service.spec.task_template
    return all(f.check(node, spec, 0) for f in FILTERS if not isinstance(f, MaxReplicasFilter))


def explain_no_fit(nodes: Sequence[Node], spec: TaskSpec, on_node: dict[str, int]) -> str:
    """Why no node fits: each node is counted under the first filter that refused it."""
    if not nodes:
        return "no suitable node (no nodes in the swarm)"
    counts: dict[int, int] = {}
    for node in nodes:
        for index, f in enumerate(FILTERS):
            if not f.check(node, spec, on_node.get(node.id, 0)):
                counts[index] = counts.get(index, 0) + 1
                break
    reasons = "; ".join(FILTERS[i].explain(c) for i, c in sorted(counts.items()))
    return f"no suitable node ({reasons})"
