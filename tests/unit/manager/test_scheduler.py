"""Scheduler filters and spreading: pure."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

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


# --- resources -----------------------------------------------------------------------------

GB = 1 << 30


def sized(nid: str, cpus: int, memory: int) -> Node:
    n = node(nid)
    n.description.resources = {"NanoCPUs": cpus * 10**9, "MemoryBytes": memory}
    return n


def reserving(cpus: float = 0, memory: int = 0, nid: str = "", state: str = "pending") -> Task:
    from shoal.api.container import ResourceRequirements, Resources
    from shoal.api.types import TaskStatusInfo

    res = Resources(nano_cpus=int(cpus * 10**9), memory_bytes=memory)
    return Task(
        id=f"t{nid}{state}{cpus}{memory}",
        service_id="s",
        node_id=nid,
        desired_state="running",
        status=TaskStatusInfo(state=state),
        spec=TaskSpec(resources=ResourceRequirements(reservations=res)),
    )


def test_resource_filter_counts_what_is_already_reserved() -> None:
    from shoal.manager.scheduler.filters import Reserved, ResourceFilter

    a = sized("a", 2, 4 * GB)
    want = reserving(cpus=1, memory=2 * GB).spec
    assert ResourceFilter({}).check(a, want, 0)
    assert ResourceFilter({"a": Reserved(10**9, 2 * GB)}).check(a, want, 0)
    assert not ResourceFilter({"a": Reserved(10**9 + 1, 0)}).check(a, want, 0)
    assert not ResourceFilter({"a": Reserved(0, 2 * GB + 1)}).check(a, want, 0)
    # no reservation: always fits; a node that reports nothing is not limited by it
    assert ResourceFilter({"a": Reserved(9 * 10**9, 9 * GB)}).check(a, TaskSpec(), 0)
    assert ResourceFilter({}).check(node("b"), want, 0)


def test_pick_node_places_by_reservation() -> None:
    from shoal.manager.scheduler.filters import Reserved

    nodes = [sized("a", 1, 8 * GB), sized("b", 4, 8 * GB)]
    chosen = pick_node(reserving(cpus=2), nodes, Counter(), Counter({"b": 9}))
    assert chosen is not None and chosen.id == "b"  # a is emptier but has one CPU
    full = {"b": Reserved(3 * 10**9, 0)}
    assert pick_node(reserving(cpus=2), nodes, Counter(), Counter(), full) is None


def test_no_fit_for_resources_says_swarms_words() -> None:
    nodes = [
        sized("a", 1, GB),
        sized("b", 1, GB),
        sized(
            "c",
            1,
            GB,
        ),
    ]
    nodes[2].spec.availability = "drain"
    t = reserving(memory=2 * GB)
    assert explain_no_fit(nodes, t.spec, {}, {}) == (
        "no suitable node (1 node not available for new tasks; insufficient resources on 2 nodes)"
    )


def test_scheduler_pass_keeps_a_task_pending_when_nothing_fits(tmp_path: Path) -> None:
    import asyncio

    from shoal.manager.scheduler.scheduler import Scheduler
    from shoal.manager.state.locallog import LocalLog
    from shoal.manager.state.store import Store

    async def run() -> list[Task]:
        store = Store()
        log = LocalLog(tmp_path / "state.db", store)
        log.restore()
        store.attach(log)
        first = reserving(cpus=1.5)
        second = reserving(cpus=1.5, memory=1)

        def seed(tx: object) -> None:
            for n in (sized("a", 2, GB), sized("b", 2, GB)):
                tx.create("node", n)  # type: ignore[attr-defined]
            tx.create("task", first)  # type: ignore[attr-defined]
            for i, t in enumerate([second, reserving(cpus=1, memory=1)]):
                t.id, t.slot = f"x{i}", i + 2
                tx.create("task", t)  # type: ignore[attr-defined]

        await store.update(seed)
        await store.update(Scheduler(store)._pass)
        return sorted(store.view().list("task"), key=lambda t: t.slot)

    tasks = asyncio.run(run())
    placed = [t for t in tasks if t.node_id]
    assert len(placed) == 2 and {t.node_id for t in placed} == {"a", "b"}
    waiting = [t for t in tasks if not t.node_id]
    assert len(waiting) == 1 and waiting[0].status.state == "pending"
    assert waiting[0].status.err == "no suitable node (insufficient resources on 2 nodes)"
