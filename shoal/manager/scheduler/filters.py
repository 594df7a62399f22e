"""Scheduling filters: pure. Each `check`s a node for a task and `explain`s a refusal.

`explain` texts follow swarmkit's, so a task that fits nowhere says why in `service ps`:
"no suitable node (1 node not available for new tasks; 2 nodes not ready)".

`ResourceFilter` is built per scheduling pass from what the tasks already on each node
reserve (`Reserved`); a node fits when its reported NanoCPUs/MemoryBytes minus those
reservations cover the task's. A node that reports no resources is not limited by it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from shoal.api.container import Resources
from shoal.api.types import Node, Service, TaskSpec

__all__ = [
    "FILTERS",
    "Filter",
    "Reserved",
    "ResourceFilter",
    "explain_no_fit",
    "filters_for",
    "match_constraint",
    "node_is_eligible",
    "reservation_of",
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


@dataclass(frozen=True)
class Reserved:
    nano_cpus: int = 0
    memory_bytes: int = 0

    def __add__(self, other: Reserved) -> Reserved:
        return Reserved(self.nano_cpus + other.nano_cpus, self.memory_bytes + other.memory_bytes)


def reservation_of(spec: TaskSpec) -> Reserved:
    res = spec.resources.reservations if spec.resources else None
    res = res or Resources()
    return Reserved(max(res.nano_cpus, 0), max(res.memory_bytes, 0))


class ResourceFilter:
    """Reservations against each node's capacity minus what its tasks already reserve."""

    def __init__(self, reserved: Mapping[str, Reserved]) -> None:
        self._reserved = reserved

    def check(self, node: Node, spec: TaskSpec, on_node: int) -> bool:
        want = reservation_of(spec)
        if not want.nano_cpus and not want.memory_bytes:
            return True
        capacity = node.description.resources
        if not capacity:
            return True
        used = self._reserved.get(node.id, Reserved())
        cpus = int(capacity.get("NanoCPUs") or 0)
        memory = int(capacity.get("MemoryBytes") or 0)
        return (not want.nano_cpus or used.nano_cpus + want.nano_cpus <= cpus) and (
            not want.memory_bytes or used.memory_bytes + want.memory_bytes <= memory
        )

    def explain(self, count: int) -> str:
        return f"insufficient resources on {_plural(count)}"


FILTERS: tuple[Filter, ...] = (
    ReadyFilter(),
    AvailabilityFilter(),
    ConstraintFilter(),
    MaxReplicasFilter(),
)


def filters_for(reserved: Mapping[str, Reserved] | None) -> tuple[Filter, ...]:
    """The filters of one pass: the static ones, then resources against `reserved`."""
    return (*FILTERS, ResourceFilter(reserved or {}))


def node_is_eligible(node: Node, service: Service) -> bool:
    spec = service.spec.task_template
    return all(f.check(node, spec, 0) for f in FILTERS if not isinstance(f, MaxReplicasFilter))


def explain_no_fit(
    nodes: Sequence[Node],
    spec: TaskSpec,
    on_node: dict[str, int],
    reserved: Mapping[str, Reserved] | None = None,
) -> str:
    """Why no node fits: each node is counted under the first filter that refused it."""
    if not nodes:
        return "no suitable node (no nodes in the swarm)"
    filters = filters_for(reserved)
    counts: dict[int, int] = {}
    for node in nodes:
        for index, f in enumerate(filters):
            if not f.check(node, spec, on_node.get(node.id, 0)):
                counts[index] = counts.get(index, 0) + 1
                break
    reasons = "; ".join(filters[i].explain(c) for i, c in sorted(counts.items()))
    return f"no suitable node ({reasons})"
