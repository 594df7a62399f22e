"""Scheduler filters and spreading: pure."""

from __future__ import annotations

from collections import Counter

from shoal.api.types import Node, NodeDescription, NodeSpec, NodeStatus, Placement, Task, TaskSpec
from shoal.manager.scheduler.filters import explain_no_fit, match_constraint
from shoal.manager.scheduler.scheduler import pick_node


def node(
    nid: str,
    state: str = "ready",
    availability: str = "active",
    role: str = "worker",
    labels: dict[str, str] | None = None,
) -> Node:
    return Node(
        id=nid,
        spec=NodeSpec(role=role, availability=availability, labels=labels),  # type: ignore[arg-type]
        description=NodeDescription(hostname=f"host-{nid}"),
        status=NodeStatus(state=state),  # type: ignore[arg-type]
    )


def task(service: str = "s", constraints: list[str] | None = None, max_replicas: int = 0) -> Task:
    return Task(
        id="t",
        service_id=service,
        spec=TaskSpec(placement=Placement(constraints=constraints, max_replicas=max_replicas)),
    )


def test_spreads_by_service_then_total() -> None:
    nodes = [node("a"), node("b"), node("c")]
    per_service = Counter({("a", "s"): 1, ("b", "s"): 1})
    total = Counter({"a": 1, "b": 1, "c": 5})
    chosen = pick_node(task(), nodes, per_service, total)
    assert chosen is not None and chosen.id == "c"
    per_service[("c", "s")] = 1
    chosen = pick_node(task(), nodes, per_service, total)
    assert chosen is not None and chosen.id == "a"


def test_constraints() -> None:
    n = node("abc", role="manager", labels={"zone": "east"})
    assert match_constraint(n, "node.role==manager")
    assert not match_constraint(n, "node.role!=manager")
    assert match_constraint(n, "node.labels.zone == east")
    assert match_constraint(n, "node.labels.rack!=r1")
    assert match_constraint(n, "node.hostname==host-abc")
    assert match_constraint(n, "node.id==abc")


def test_no_fit_explains_why() -> None:
    nodes = [node("a", availability="drain"), node("b", state="down"), node("c")]
    t = task(constraints=["node.role==manager"])
    assert pick_node(t, nodes, Counter(), Counter()) is None
    assert explain_no_fit(nodes, t.spec, {}) == (
        "no suitable node (1 node not ready; 1 node not available for new tasks; "
        "scheduling constraints not satisfied on 1 node)"
    )
    t = task(max_replicas=1)
    assert pick_node(t, [node("c")], Counter({("c", "s"): 1}), Counter()) is None
