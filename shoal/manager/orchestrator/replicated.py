"""Replicated and global services: the right number of tasks, per slot or per node.

One pass per commit over every service: slots without a running task get one (subject to
the restart policy), surplus slots are shut down, out-of-date tasks are replaced in rolling
batches (update.py), tasks of removed services are marked for removal.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict

import msgspec

from shoal.api.states import TaskState, is_terminal, rank
from shoal.api.timefmt import now_rfc3339
from shoal.api.types import Endpoint, EndpointSpec, Node, Service, Task, UpdateStatus
from shoal.errors import InvalidArgument
from shoal.manager.allocator.netalloc import task_attachments
from shoal.manager.allocator.ports import allocate_ports
from shoal.manager.orchestrator.restart import restart_at
from shoal.manager.orchestrator.tasks import is_current, is_dead, new_task
from shoal.manager.orchestrator.update import (
    active_config,
    failure_verdict,
    is_rolling_back,
    replaced_by_ready,
    settle_wait,
    slots_to_update,
    units_in,
)
from shoal.manager.reconciler import Reconciler
from shoal.manager.scheduler.filters import node_is_eligible
from shoal.manager.state.store import Tx

__all__ = ["Orchestrator"]

log = logging.getLogger(__name__)


class Orchestrator(Reconciler):
    name = "orchestrator"
    kinds = frozenset({"service", "node", "task"})

    async def reconcile(self) -> float | None:
        wake: list[float] = []
        await self.store.update(lambda tx: self._pass(tx, time.time(), wake))
        return min(wake) if wake else None

    def _pass(self, tx: Tx, now: float, wake: list[float]) -> None:
        # shallow copies (`Tx.scan`): a pass only reassigns top-level fields (desired
        # state; a service's spec, endpoint, update status) before `tx.update`
        services = {s.id: s for s in tx.scan("service")}
        nodes = {n.id: n for n in tx.scan("node")}
        by_service: dict[str, list[Task]] = defaultdict(list)
        for task in tx.scan("task"):
            if task.service_id not in services:
                if rank(task.desired_state) < TaskState.REMOVE:
                    task.desired_state = "remove"
                    tx.update("task", task)
                continue
            by_service[task.service_id].append(task)
        for service in services.values():
            tasks = by_service.get(service.id, [])
            self._retire_dead_or_stranded(tx, tasks, nodes)
            self._act_on_failures(tx, service, tasks)
            if service.spec.mode is not None and service.spec.mode.global_ is not None:
                self._global(tx, service, tasks, nodes, now, wake)
            else:
                self._replicated(tx, service, tasks, now, wake)
            self._update_status(tx, service, tasks, now, wake)

    def _retire_dead_or_stranded(self, tx: Tx, tasks: list[Task], nodes: dict[str, Node]) -> None:
        for task in tasks:
            node = nodes.get(task.node_id) if task.node_id else None
            # a down node's tasks are replaced elsewhere; if the node comes back, its agent
            # sees them shut down and stops whatever still runs (swarmkit does the same)
            stranded = task.node_id and (
                node is None or node.spec.availability == "drain" or node.status.state == "down"
            )
            if is_current(task) and stranded:
                log.info(
                    "task %s: node %s drained, down or gone, shutting it down",
                    task.id,
                    task.node_id,
                )
                task.desired_state = "shutdown"
                tx.update("task", task)

    def _replicated(
        self, tx: Tx, service: Service, tasks: list[Task], now: float, wake: list[float]
    ) -> None:
        mode = service.spec.mode
        want = (mode.replicated.replicas or 0) if mode and mode.replicated else 1
        slots: dict[int, list[Task]] = defaultdict(list)
        for task in tasks:
            slots[task.slot].append(task)
        nodes = {n.id: n for n in tx.scan("node")}  # read only
        for slot in range(1, want + 1):
            history = sorted(slots.get(slot, []), key=lambda t: t.version.index)
            if any(is_current(t) for t in history):
                continue
            dead = [t for t in history if is_dead(t) or t.desired_state == "shutdown"]
            attempt = 0
            if dead:
                last = dead[-1]
                if self._still_stopping(last, nodes):
                    continue  # stop-first: the slot's new task waits for the old one to end
                at = restart_at(service, last)
                for t in dead:
                    if is_dead(t):
                        t.desired_state = "shutdown"
                        tx.update("task", t)
                if at is None:
                    continue
                if at > now:
                    wake.append(at - now)
                    continue
                attempt = last.attempt + 1 if at > 0 else 0
            self._create(tx, tasks, new_task(service, slot, attempt=attempt))
        for slot, history in slots.items():
            if slot > want:  # scaled down: the slot is gone (swarmkit: desired `remove`, so
                for task in history:  # the reaper deletes its tasks once they have stopped)
                    if rank(task.desired_state) < TaskState.REMOVE:
                        task.desired_state = "remove"
                        tx.update("task", task)
        self._roll(tx, service, [t for t in tasks if t.slot <= want], tasks, now, wake)

    def _roll(
        self,
        tx: Tx,
        service: Service,
        units: list[Task],
        tasks: list[Task],
        now: float,
        wake: list[float],
    ) -> None:
        """One step of a rolling update over the tasks of wanted units (update.py decides)."""
        start_first = active_config(service).order == "start-first"
        for old in replaced_by_ready(service, units):
            old.desired_state = "shutdown"  # its replacement is running: drain and stop it
            tx.update("task", old)
        stale_units = {(t.slot, t.node_id) for t in units if is_current(t)}
        for task in units:
            if is_dead(task) and (task.slot, task.node_id) in stale_units:
                task.desired_state = "shutdown"  # start-first: a new task that failed
                tx.update("task", task)
        for task in self._next_batch(service, units, now, wake):
            if start_first:
                node_id = task.node_id if task.slot == 0 else ""
                self._create(tx, tasks, new_task(service, task.slot, node_id=node_id))
            else:
                task.desired_state = "shutdown"
                tx.update("task", task)

    def _act_on_failures(self, tx: Tx, service: Service, tasks: list[Task]) -> None:
        """Past the failure ratio: pause the update or rollback, or roll back to PreviousSpec."""
        verdict = failure_verdict(service, tasks, units_in(tasks))
        if verdict is None:
            return
        log.info("service %s: %s", service.id, verdict.message)
        started = service.update_status.started_at if service.update_status else ""
        if verdict.rollback and service.previous_spec is not None:
            # swarmkit: Spec = PreviousSpec, PreviousSpec cleared
            service.spec = service.previous_spec
            service.previous_spec = None
            # the previous spec's tasks still running are up to date again: kept, not replaced
            service.spec_version = service.previous_spec_version or service.spec_version + 1
            service.previous_spec_version = 0
            service.endpoint = self._restored_endpoint(tx, service)
            started = now_rfc3339()
        service.update_status = UpdateStatus(
            state=verdict.state, started_at=started, message=verdict.message
        )
        tx.update("service", service)

    @staticmethod
    def _restored_endpoint(tx: Tx, service: Service) -> Endpoint:
        """The published ports of the spec rolled back to (swarmkit re-allocates them); a
        dynamic port keeps the number it has now; if another service took one meanwhile,
        the current endpoint stays."""
        endpoint_spec = service.spec.endpoint_spec or EndpointSpec()
        current = {(p.target_port, p.protocol or "tcp"): p.published_port
                   for p in service.endpoint.ports or []}
        wanted = [
            msgspec.structs.replace(
                p, published_port=current.get((p.target_port, p.protocol or "tcp"), 0)
            ) if not p.published_port and (p.publish_mode or "ingress") == "ingress" else p
            for p in endpoint_spec.ports or []
        ]
        try:
            ports = allocate_ports(service.id, wanted, tx.list("service"))
        except InvalidArgument as exc:
            log.warning("service %s: rollback keeps its ports: %s", service.id, exc)
            return service.endpoint
        return msgspec.structs.replace(service.endpoint, spec=endpoint_spec, ports=ports or None)

    @staticmethod
    def _create(tx: Tx, tasks: list[Task], task: Task) -> None:
        # later steps of the same pass (update batches, status) must see the new task
        service = tx.get("service", task.service_id)
        if service is not None:
            task.networks_attachments = task_attachments(tx, service)
        tx.create("task", task)
        tasks.append(task)

    @staticmethod
    def _still_stopping(task: Task, nodes: dict[str, Node]) -> bool:
        """Shut down on purpose, not ended yet, on a node that can still end it."""
        node = nodes.get(task.node_id) if task.node_id else None
        return (
            node is not None
            and node.status.state == "ready"
            and not is_terminal(task.status.state)
            and rank(task.status.state) >= TaskState.ASSIGNED
        )

    @staticmethod
    def _next_batch(
        service: Service, tasks: list[Task], now: float, wake: list[float]
    ) -> list[Task]:
        batch = slots_to_update(service, tasks, now)
        delay = active_config(service).delay / 1e9
        hold = settle_wait(service, tasks, now, delay) if batch else 0
        if hold > 0:  # UpdateConfig.Delay between batches
            wake.append(hold)
            return []
        return batch

    def _global(
        self,
        tx: Tx,
        service: Service,
        tasks: list[Task],
        nodes: dict[str, Node],
        now: float,
        wake: list[float],
    ) -> None:
        eligible = {n.id for n in nodes.values() if node_is_eligible(n, service)}
        running_on = {t.node_id for t in tasks if is_current(t)}
        # stop-first: a node's new task waits for its old one to end
        stopping_on = {t.node_id for t in tasks if self._still_stopping(t, nodes)}
        for node_id in sorted(eligible - running_on - stopping_on):
            self._create(tx, tasks, new_task(service, 0, node_id=node_id))
        for task in tasks:
            if (is_current(task) and task.node_id not in eligible) or (
                is_dead(task) and task.desired_state != "shutdown"
            ):
                task.desired_state = "shutdown"
                tx.update("task", task)
        self._roll(tx, service, [t for t in tasks if t.node_id in eligible], tasks, now, wake)

    def _update_status(
        self, tx: Tx, service: Service, tasks: list[Task], now: float, wake: list[float]
    ) -> None:
        current = [t for t in tasks if is_current(t)]
        stale = any(t.spec_version != service.spec_version for t in current) or any(
            t.spec_version != service.spec_version
            and t.desired_state == "shutdown"
            and t.node_id
            and not is_terminal(t.status.state)
            for t in tasks
        )
        fresh_pending = any(
            t.spec_version == service.spec_version and t.status.state != "running" for t in current
        ) or _missing_units(service, current)
        state = service.update_status.state if service.update_status else ""
        if service.spec_version > 1 and not state and (stale or fresh_pending):
            service.update_status = UpdateStatus(
                state="updating", started_at=now_rfc3339(), message="update in progress"
            )
            tx.update("service", service)
        elif state in ("updating", "rollback_started") and not stale and not fresh_pending:
            hold = settle_wait(service, tasks, now, active_config(service).monitor / 1e9)
            if hold > 0:  # the monitoring period: a task dying now still fails the update
                wake.append(hold)
                return
            assert service.update_status is not None
            done = "rollback" if is_rolling_back(service) else "update"
            service.update_status = UpdateStatus(
                state=f"{done}_completed" if done == "rollback" else "completed",
                started_at=service.update_status.started_at,
                completed_at=now_rfc3339(),
                message=f"{done} completed",
            )
            tx.update("service", service)


def _missing_units(service: Service, current: list[Task]) -> bool:
    """A replicated service's slot without a task yet (its new one waits for a restart
    delay): an update or rollback is not complete until that slot has its task again."""
    mode = service.spec.mode
    if mode is None or mode.replicated is None:
        return False
    want = mode.replicated.replicas or 0
    return len({t.slot for t in current if t.slot <= want}) < want
