"""A tiny cluster for the orchestrator: a store, ready nodes, and a hand-driven agent."""

from __future__ import annotations

from pathlib import Path

from shoal.api.timefmt import from_epoch
from shoal.api.types import (
    GlobalMode,
    Node,
    NodeStatus,
    ReplicatedMode,
    Service,
    ServiceMode,
    ServiceSpec,
    Task,
    TaskSpec,
    UpdateConfig,
)
from shoal.manager.orchestrator.replicated import Orchestrator
from shoal.manager.state.locallog import LocalLog
from shoal.manager.state.store import Store, Tx
from tests.unit.manager.stores import assert_untouched, committed

NOW = 1_000_000.0


def spec(
    env: str = "v1",
    replicas: int | None = 3,
    update: UpdateConfig | None = None,
    rollback: UpdateConfig | None = None,
) -> ServiceSpec:
    mode = (
        ServiceMode(global_=GlobalMode())
        if replicas is None
        else ServiceMode(replicated=ReplicatedMode(replicas=replicas))
    )
    return ServiceSpec(
        name="web",
        task_template=TaskSpec(),
        mode=mode,
        labels={"v": env},
        update_config=update or UpdateConfig(parallelism=1, failure_action="pause"),
        rollback_config=rollback or UpdateConfig(parallelism=1, failure_action="pause"),
    )


class Cluster:
    def __init__(self, root: Path, nodes: int = 3) -> None:
        self.store = Store()
        log = LocalLog(root / "state.db", self.store)
        log.restore()
        self.store.attach(log)
        self.orch = Orchestrator(self.store)
        self.now = NOW
        self.nodes = [f"n{i}" for i in range(nodes)]

    async def start(self, service_spec: ServiceSpec) -> None:
        def fn(tx: Tx) -> None:
            for n in self.nodes:
                tx.create("node", Node(id=n, status=NodeStatus(state="ready")))
            tx.create("service", Service(id="s", spec=service_spec, spec_version=1))

        await self.store.update(fn)
        await self.converge()

    def service(self) -> Service:
        svc: Service = self.store.view().get("service", "s")
        return svc

    def tasks(self) -> list[Task]:
        return list(self.store.view().list("task"))

    def live(self) -> list[Task]:
        """Tasks that run (and, once running, take traffic) right now."""
        return [t for t in self.tasks() if t.status.state in ("starting", "running")]

    async def step(self) -> list[float]:
        wake: list[float] = []
        before = committed(self.store)
        await self.store.update(lambda tx: self.orch._pass(tx, self.now, wake))
        assert_untouched(before)  # the pass wrote through copies (`Tx.scan`)
        return wake

    async def agent(self, fail: set[int] | None = None, start_only: bool = False) -> None:
        """Assign, start (or fail, for spec versions in `fail`), and stop tasks."""

        def fn(tx: Tx) -> None:
            for task in tx.list("task"):
                if not task.node_id:
                    task.node_id = self.nodes[task.slot % len(self.nodes)]
                state = task.status.state
                if task.desired_state != "running" and state not in (
                    "shutdown",
                    "failed",
                    "complete",
                    "rejected",
                ):
                    state = "shutdown"
                elif state == "new":
                    state = "starting"
                elif state == "starting" and not start_only:
                    bad = fail is not None and task.spec_version in fail
                    state = "failed" if bad else "running"
                else:
                    continue
                task.status.state = state
                task.status.timestamp = from_epoch(self.now)
                tx.update("task", task)

        await self.store.update(fn)

    async def update(self, new: ServiceSpec) -> None:
        def fn(tx: Tx) -> None:
            svc: Service = tx.get("service", "s")
            svc.previous_spec = svc.spec
            svc.spec = new
            svc.previous_spec_version = svc.spec_version  # as the control API does
            svc.spec_version += 1
            svc.update_status = None
            tx.update("service", svc)

        await self.store.update(fn)

    async def converge(self, rounds: int = 60, fail: set[int] | None = None) -> None:
        for _ in range(rounds):
            wake = await self.step()
            await self.agent(fail)
            self.now += max(wake, default=1.0)
