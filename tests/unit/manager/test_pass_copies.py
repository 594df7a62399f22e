"""Reconciler passes read through shallow copies (`Tx.scan`): the scheduler and the reaper
place, refuse and delete as before, and no committed object is changed in place."""

from __future__ import annotations

from pathlib import Path

from shoal.api.types import (
    Node,
    NodeStatus,
    Placement,
    Service,
    ServiceSpec,
    Task,
    TaskSpec,
    TaskStatusInfo,
)
from shoal.manager.orchestrator.reaper import TaskReaper
from shoal.manager.scheduler.scheduler import Scheduler
from shoal.manager.state.store import Tx
from tests.unit.manager.stores import assert_untouched, committed, local_store


def _task(tid: str, slot: int, state: str = "new", node: str = "", desired: str = "running",
          constraints: list[str] | None = None, service: str = "s") -> Task:  # fmt: skip
    return Task(
        id=tid, service_id=service, slot=slot, node_id=node, desired_state=desired,  # type: ignore[arg-type]
        spec=TaskSpec(placement=Placement(constraints=constraints)),
        status=TaskStatusInfo(state=state),  # type: ignore[arg-type]
    )  # fmt: skip


async def test_scheduler_places_refuses_and_moves_global_tasks_without_touching_the_store(
    tmp_path: Path,
) -> None:
    store = local_store(tmp_path)

    def seed(tx: Tx) -> None:
        for n in ("a", "b"):
            tx.create("node", Node(id=n, status=NodeStatus(state="ready")))
        tx.create("service", Service(id="s", spec=ServiceSpec(name="web")))
        tx.create("task", _task("t1", 1))
        tx.create("task", _task("t2", 2))
        tx.create("task", _task("t3", 3, constraints=["node.role==nobody"]))
        # a global service's task: born with its node
        tx.create("task", _task("g1", 0, node="b", service="g"))

    await store.update(seed)
    before = committed(store)
    await store.update(Scheduler(store)._pass)
    assert_untouched(before)
    tasks = {t.id: t for t in store.view().list("task")}
    assert {tasks["t1"].node_id, tasks["t2"].node_id} == {"a", "b"}  # spread
    assert tasks["t1"].status.state == tasks["t2"].status.state == "assigned"
    assert tasks["t3"].status.state == "pending" and tasks["t3"].status.err.startswith("no suit")
    assert (tasks["g1"].node_id, tasks["g1"].status.state) == ("b", "assigned")


async def test_reaper_deletes_removed_and_old_tasks_without_touching_the_store(
    tmp_path: Path,
) -> None:
    store = local_store(tmp_path)

    def seed(tx: Tx) -> None:
        tx.create("node", Node(id="a", status=NodeStatus(state="ready")))
        for i in range(8):  # slot 1's history: 7 shut down, 1 running
            done = i < 7
            tx.create("task", _task(f"h{i}", 1, state="shutdown" if done else "running",
                                    node="a", desired="shutdown" if done else "running"))
        tx.create("task", _task("gone", 2, state="complete", node="a", desired="remove"))

    await store.update(seed)
    before = committed(store)
    await store.update(TaskReaper(store)._pass)
    assert_untouched(before)
    left = sorted(t.id for t in store.view().list("task"))
    assert left == ["h2", "h3", "h4", "h5", "h6", "h7"]  # the 5 newest of history + running
