"""The agent: runs the tasks the dispatcher assigns to this node and reports their states.

It keeps one `TaskController` per task it runs, starts one for each new assignment, asks
controllers to stop when a task's desired state passes `running`, and after a daemon restart
adopts the task processes that survived (their shims kept running) and reports the rest lost.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from shoal.agent.controller import NodeContext, TaskController
from shoal.api.session import AgentSession, StatusUpdate
from shoal.api.states import TaskState, is_terminal, rank
from shoal.api.timefmt import now_rfc3339
from shoal.api.types import Task, TaskStatusInfo
from shoal.errors import ShoalError

__all__ = ["Agent"]

log = logging.getLogger(__name__)


class Agent:
    def __init__(self, ctx: NodeContext, session: AgentSession, heartbeat: float = 5.0) -> None:
        self.ctx = ctx
        self.session = session
        self._heartbeat = heartbeat
        self._controllers: dict[str, TaskController] = {}
        self._finished: set[str] = set()
        self._assigned: set[str] = set()  # the task ids of the last assignment set
        self._leaving = False  # swarm leave: stop everything, start nothing new
        self._updates: asyncio.Queue[StatusUpdate] = asyncio.Queue()
        self._tg: asyncio.TaskGroup | None = None
        self.recovered = asyncio.Event()  # set once surviving tasks are adopted or cleaned
        ctx.report = self._updates.put_nowait

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            tg.create_task(self._reporter())
            tg.create_task(self._heartbeats())
            recovered = False
            async for tasks in self.session.assignments():
                if not recovered:
                    await self._recover(tasks)
                    recovered = True
                self._reconcile(tasks)
                self.recovered.set()

    async def stop_all(self) -> None:
        """Stop every task this agent runs and start no other (swarm leave): until the node
        is gone, the managers may still assign it the replacements of what it stops."""
        self._leaving = True
        for ctl in self._controllers.values():
            ctl.request_stop()
        while any(not c.done for c in self._controllers.values()):
            await asyncio.sleep(0.05)

    # -- assignments --------------------------------------------------------------------
    def _reconcile(self, tasks: list[Task]) -> None:
        assert self._tg is not None
        assigned = {t.id: t for t in tasks}
        self._assigned = set(assigned)
        for task_id, ctl in list(self._controllers.items()):
            task = assigned.get(task_id)
            if task is None or TaskController.wants_stop(task):
                ctl.request_stop()
            if ctl.done:
                del self._controllers[task_id]
                self._finished.add(task_id)
        for task in tasks:
            if self._leaving:
                break
            if task.id in self._controllers or task.id in self._finished:
                continue
            if is_terminal(task.status.state):
                continue
            if rank(task.status.state) > TaskState.ASSIGNED:
                # reported started by an earlier life of this daemon, not adopted: lost
                self._lost(task)
                continue
            ctl = TaskController(self.ctx, task)
            if TaskController.wants_stop(task):
                ctl.request_stop()
            self._controllers[task.id] = ctl
            self._tg.create_task(self._run_controller(ctl))
        for task_id in list(self._finished):
            if task_id not in assigned:
                self._finished.discard(task_id)
                self._tg.create_task(self._purge(task_id))

    async def _run_controller(self, ctl: TaskController) -> None:
        """Run a task; one whose task the managers dropped meanwhile is purged at its end
        (no later assignment set may come to tell)."""
        await ctl.run()
        if ctl.task_id not in self._assigned and self._controllers.get(ctl.task_id) is ctl:
            del self._controllers[ctl.task_id]
            await self._purge(ctl.task_id)

    async def _purge(self, task_id: str) -> None:
        try:
            await self.ctx.runtime.purge(task_id)
        except Exception:
            log.exception("task %s: purge failed", task_id)

    def _lost(
        self,
        task: Task,
        state: str = "failed",
        err: str = "task process lost while the daemon was down",
    ) -> None:
        """Report a task an earlier daemon started and this one does not run: `state`."""
        log.info("task %s: not running after a restart: %s", task.id, state)
        self._finished.add(task.id)
        message = "started" if state == "failed" else "shutdown"
        status = TaskStatusInfo(timestamp=now_rfc3339(), state=state, message=message, err=err)
        self._updates.put_nowait(StatusUpdate(task.id, status))

    async def _recover(self, tasks: list[Task]) -> None:
        assert self._tg is not None
        assigned = {t.id: t for t in tasks}
        self._assigned = set(assigned)
        for record in self.ctx.runtime.existing():
            task = assigned.get(record.task_id)
            keep = (
                task is not None
                and not TaskController.wants_stop(task)
                and not is_terminal(task.status.state)
                and record.alive
            )
            if keep and task is not None and await self.ctx.runtime.adopt(record.task_id):
                self.ctx.ipam.reserve(record.address.ip)
                ctl = TaskController(self.ctx, task, adopted_address=str(record.address.ip))
                if task.status.state == "running":
                    # it was serving before the restart: back in the table before the mesh's
                    # first apply (which waits for `recovered`), so its port never refuses
                    ctl.rejoin_mesh()
                self._controllers[task.id] = ctl
                self._tg.create_task(self._run_controller(ctl))
                continue
            log.info("task %s: cleaning up what a previous daemon left", record.task_id)
            try:
                if record.alive:
                    await self.ctx.runtime.stop(record.task_id, 1.0)
                await self.ctx.runtime.remove(record.task_id)
            except ShoalError:
                log.exception("task %s: cleanup failed", record.task_id)
            if task is None:
                await self._purge(record.task_id)
            elif is_terminal(task.status.state):
                self._finished.add(task.id)  # purged once the managers drop it
            elif TaskController.wants_stop(task):
                self._lost(task, "shutdown", "")  # it was stopping when the daemon went
            else:
                self._lost(task)  # died before it could be adopted: the managers replace it
        # what an earlier life removed but did not purge (logs, exited containers' records):
        # purged now if its task is gone, else once the managers forget the task
        live = {r.task_id for r in self.ctx.runtime.existing()}
        for task_id in self.ctx.runtime.leftovers():
            if task_id in live or task_id in self._controllers:
                continue
            task = assigned.get(task_id)
            if task is None:
                await self._purge(task_id)
            elif is_terminal(task.status.state):
                self._finished.add(task_id)
            elif TaskController.wants_stop(task):
                self._lost(task, "shutdown", "")
            else:
                # killed mid-start (a bundle without its config): never reported past
                # `preparing`; reported lost, else it stays in limbo in the store for good
                self._lost(task)

    # -- status up, heartbeats ----------------------------------------------------------
    async def _reporter(self) -> None:
        while True:
            batch = [await self._updates.get()]
            while not self._updates.empty():
                batch.append(self._updates.get_nowait())
            try:
                await self.session.report(batch)
            except ShoalError:
                for update in batch:  # one refused update must not drop the others
                    try:
                        await self.session.report([update])
                    except ShoalError as exc:
                        log.error("task %s: status refused: %s", update.task_id, exc)

    async def _heartbeats(self) -> None:
        while True:
            try:
                await self.session.heartbeat()
            except ShoalError as exc:
                log.warning("heartbeat failed: %s", exc)
            await asyncio.sleep(self._heartbeat)


def gateway_of(subnet: str) -> ipaddress.IPv4Interface:
    net = ipaddress.IPv4Network(subnet)
    return ipaddress.IPv4Interface(f"{net.network_address + 1}/{net.prefixlen}")
