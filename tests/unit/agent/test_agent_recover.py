"""After a daemon restart, a task the earlier life left half made (killed mid-start: files,
nothing running) is reported lost if the managers still want it, never left in limbo."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

from shoal.agent.agent import Agent
from shoal.agent.controller import NodeContext
from shoal.agent.ipam import SubnetAllocator
from shoal.api.session import StatusUpdate
from shoal.api.types import Task, TaskSpec, TaskStatusInfo
from shoal.gossip.table import EndpointTable
from tests.polling import eventually
from tests.unit.fakes import FakeRuntime


class HalfStarted(FakeRuntime):
    def leftovers(self) -> list[str]:
        return ["t-prep", "t-stop", "t-done"]


class OneAssignment:
    def __init__(self, tasks: list[Task]) -> None:
        self.tasks = tasks
        self.reports: list[StatusUpdate] = []

    async def assignments(self) -> AsyncIterator[list[Task]]:
        yield self.tasks
        await asyncio.Event().wait()

    async def report(self, updates: list[StatusUpdate]) -> None:
        self.reports += updates

    async def heartbeat(self) -> None:
        pass


def task(task_id: str, state: str, desired: str) -> Task:
    return Task(id=task_id, service_id="s1", node_id="n1", spec=TaskSpec(),
                desired_state=desired, status=TaskStatusInfo(state=state))


async def test_half_started_tasks_are_reported_lost(tmp_path: Path) -> None:
    gateway = ipaddress.IPv4Interface("198.19.1.1/24")
    session = OneAssignment([task("t-prep", "preparing", "running"),
                             task("t-stop", "starting", "shutdown"),
                             task("t-done", "failed", "shutdown")])
    ctx = NodeContext("n1", "host1", gateway, HalfStarted(tmp_path),  # type: ignore[arg-type]
                      SubnetAllocator(ipaddress.IPv4Network("198.19.1.0/24")), EndpointTable(),
                      report=lambda u: None, drain_delay=0)
    agent = Agent(ctx, session)  # type: ignore[arg-type]
    run = asyncio.ensure_future(agent.run())
    await eventually(lambda: len(session.reports) >= 2, what="the lost tasks reported")
    states = {u.task_id: u.status.state for u in session.reports}
    assert states == {"t-prep": "failed", "t-stop": "shutdown"}  # t-done is terminal already
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
