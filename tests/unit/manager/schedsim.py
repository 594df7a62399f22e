"""Simulated clusters for the scheduler (seeded, pure): nodes with states, availability,
labels and resources; services with constraints, max replicas and reservations; tasks
already placed and tasks pending. `FakeTx` is the two calls a scheduling pass makes."""

from __future__ import annotations

import copy
import random
from typing import Any

from shoal.api.container import ResourceRequirements, Resources
from shoal.api.types import (
    Node,
    NodeDescription,
    NodeSpec,
    NodeStatus,
    Placement,
    Task,
    TaskSpec,
    TaskStatusInfo,
)

GIB = 1 << 30


class FakeTx:
    def __init__(self, nodes: list[Node], tasks: list[Task]) -> None:
        self.tables: dict[str, list[Any]] = {"node": nodes, "task": tasks}
        self.updates: list[tuple[str, Any]] = []
        self._where = {k: {o.id: i for i, o in enumerate(v)} for k, v in self.tables.items()}

    def list(self, kind: str) -> list[Any]:
        return list(self.tables[kind])

    def scan(self, kind: str) -> list[Any]:  # the store's: shallow copies
        return [copy.copy(o) for o in self.tables[kind]]

    def update(self, kind: str, obj: Any) -> None:
        self.updates.append((kind, obj))
        self.tables[kind][self._where[kind][obj.id]] = obj


def make_nodes(rng: random.Random, count: int, *, varied: bool = True) -> list[Node]:
    nodes = []
    for i in range(count):
        state = rng.choice(["ready"] * 8 + ["down", "unknown"]) if varied else "ready"
        avail = rng.choice(["active"] * 8 + ["drain", "pause"]) if varied else "active"
        resources = ({"NanoCPUs": rng.choice([2, 4, 8]) * 10**9,
                      "MemoryBytes": rng.choice([4, 8, 16]) * GIB}
                     if varied and rng.random() < 0.9 else None)
        nodes.append(Node(
            id=f"node{i:05d}",
            spec=NodeSpec(role=rng.choice(["worker", "worker", "manager"]),
                          availability=avail,  # type: ignore[arg-type]
                          labels={"zone": rng.choice("abc"), "disk": rng.choice(["ssd", "hdd"])}),
            description=NodeDescription(hostname=f"host{i}", resources=resources),
            status=NodeStatus(state=state),  # type: ignore[arg-type]
        ))
    return nodes


def make_spec(rng: random.Random, *, filters: bool) -> TaskSpec:
    if not filters:
        return TaskSpec()
    constraints = rng.choice([None, ["node.labels.zone==a"], ["node.role!=manager"],
                              ["node.labels.disk==ssd", "node.labels.zone!=c"]])
    res = rng.choice([None, Resources(nano_cpus=5 * 10**8), Resources(memory_bytes=GIB),
                      Resources(nano_cpus=10**9, memory_bytes=2 * GIB)])
    return TaskSpec(
        placement=Placement(constraints=constraints, max_replicas=rng.choice([0, 0, 2, 5])),
        resources=ResourceRequirements(reservations=res) if res else None,
    )


def make_tasks(
    rng: random.Random, nodes: list[Node], services: int, replicas: int, placed: int,
    *, filters: bool,
) -> list[Task]:
    """`services` services of `replicas` pending tasks each (a service may carry two specs,
    as during an update), and `placed` tasks already running somewhere."""
    tasks = []
    specs = {f"svc{s}": [make_spec(rng, filters=filters) for _ in range(2)]
             for s in range(services)}
    for s, (sid, pair) in enumerate(specs.items()):
        for slot in range(1, replicas + 1):
            spec = pair[1] if filters and slot % 7 == 0 else pair[0]
            tasks.append(Task(id=f"t{s}.{slot}", service_id=sid, slot=slot, spec=spec,
                              desired_state="running",
                              status=TaskStatusInfo(state=rng.choice(["new", "pending"]))))
    for k in range(placed):
        sid = rng.choice(list(specs))
        tasks.append(Task(id=f"p{k}", service_id=sid, slot=1000 + k, spec=specs[sid][0],
                          node_id=rng.choice(nodes).id, desired_state="running",
                          status=TaskStatusInfo(state="running")))
    return tasks


def outcome(tasks: list[Task]) -> list[tuple[str, str, str, str]]:
    return [(t.id, t.node_id, t.status.state, t.status.err) for t in tasks]
