"""A follower manager's own agent session: heartbeats go on while a report waits on a slow
leader (issue 13: in a task burst a flush took seconds and held the heartbeats back, and the
leader marked the manager's node down)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from shoal.api.session import StatusUpdate
from shoal.api.types import DispatcherConfig, Swarm, SwarmSpec, TaskStatusInfo
from shoal.manager.state.store import Tx
from shoal.node.manager_session import ManagerSession
from tests.polling import eventually
from tests.unit.manager.stores import local_store

PERIOD_NS = 50_000_000  # a 50 ms heartbeat period


class _Node:
    leader_id = 7


class SlowLeader:
    """A raft role whose leader answers heartbeats at once and status reports never."""

    is_leader = False
    node = _Node()

    def __init__(self) -> None:
        self.heartbeats = 0
        self.reports = 0

    async def call_leader(self, name: str, request: Any, response: type) -> Any:
        if name == "Dispatcher/Heartbeat":
            self.heartbeats += 1
            return response(0.05)
        self.reports += 1
        await asyncio.Event().wait()  # a leader too busy to answer


async def test_heartbeats_go_on_while_a_report_waits_on_the_leader(tmp_path: Path) -> None:
    store = local_store(tmp_path)

    def fn(tx: Tx) -> None:
        spec = SwarmSpec(dispatcher=DispatcherConfig(heartbeat_period=PERIOD_NS))
        tx.create("cluster", Swarm(id="c1", spec=spec))

    await store.update(fn)
    raft = SlowLeader()
    session = ManagerSession(store, "m2", raft)  # type: ignore[arg-type]
    report = asyncio.ensure_future(session.report([StatusUpdate(
        "t1", TaskStatusInfo(timestamp="2026-12-02T00:00:00Z", state="running"))]))
    await eventually(lambda: raft.reports == 1)
    run = asyncio.ensure_future(session.run())
    await eventually(lambda: raft.heartbeats >= 5, what="heartbeats while the report waits")
    assert not report.done()
    for task in (run, report):
        task.cancel()
    await asyncio.gather(run, report, return_exceptions=True)
