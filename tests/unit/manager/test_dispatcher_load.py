"""The dispatcher under load: no task left in limbo, heartbeats never wait on the store.

The burst of issue 13, in-process: a worker holds many tasks, its reports are lost with the
session they were sent on (a deposed manager acknowledged and forgot them), it is marked
down and its tasks are shut down; the next session must bring every task to a terminal
state. A node that never returns has its tasks orphaned.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from shoal import timeouts
from shoal.agent.session_client import RemoteSession
from shoal.api.session import StatusUpdate
from shoal.api.states import is_terminal
from shoal.api.types import ManagerStatus, Node, NodeStatus, Task, TaskSpec, TaskStatusInfo
from shoal.ca.certs import NodeIdentity
from shoal.cluster.server import Caller
from shoal.cluster.wire import (
    Empty,
    HeartbeatResponse,
    SessionMessage,
    SessionRequest,
    StatusRequest,
)
from shoal.errors import Unavailable
from shoal.manager.dispatcher.dispatcher import Dispatcher
from shoal.manager.state.store import Store, Tx
from tests.polling import eventually as until
from tests.unit.manager.stores import local_store

N_TASKS = 60



async def seed(store: Store, n_tasks: int = N_TASKS) -> list[str]:
    ids = [f"t{i:03}" for i in range(n_tasks)]

    def fn(tx: Tx) -> None:
        tx.create("node", Node(id="w1", status=NodeStatus(state="ready", addr="10.0.0.2")))
        for task_id in ids:
            tx.create(
                "task",
                Task(
                    id=task_id,
                    service_id="s1",
                    node_id="w1",
                    spec=TaskSpec(),
                    desired_state="running",
                    status=TaskStatusInfo(state="assigned"),
                ),
            )

    await store.update(fn)
    return ids


CALLER = Caller(NodeIdentity("w1", "worker", "c1"), "10.0.0.2:5000")  # type: ignore[arg-type]


class InProcessClient:
    """What RemoteSession's ClusterClient does, served by an in-process dispatcher.

    `lose_reports`: acknowledge status reports and forget them (a manager deposed mid-call).
    """

    def __init__(self, dispatcher: Dispatcher, lose_reports: bool = False) -> None:
        self.addr = "manager:2377"
        self._dispatcher = dispatcher
        self._lose = lose_reports

    def stream(self, method: str, req: SessionRequest, _: type) -> AsyncIterator[SessionMessage]:
        assert method == "Dispatcher/Session"
        return self._dispatcher.session(req, CALLER)

    async def call(self, method: str, req: Any, _: type, timeout: float = 0) -> Any:
        if method == "Dispatcher/UpdateTaskStatus":
            assert isinstance(req, StatusRequest)
            return Empty() if self._lose else await self._dispatcher.update_status(req, CALLER)
        if method == "Dispatcher/Heartbeat":
            return await self._dispatcher.heartbeat(Empty(), CALLER)
        raise AssertionError(method)

    async def close(self) -> None:
        pass


def remote_session() -> RemoteSession:
    return RemoteSession(["manager:2377"], lambda: None, "w1", "10.0.0.2")  # type: ignore[arg-type,return-value]


def status(state: str) -> TaskStatusInfo:
    return TaskStatusInfo(timestamp="2026-12-02T00:00:00Z", state=state, message=state)


async def test_reports_lost_with_a_session_reach_the_store_from_the_next(tmp_path: Path) -> None:
    store = local_store(tmp_path)
    ids = await seed(store)
    dispatcher = Dispatcher(store, "m1")
    dispatcher.leading = True
    session = remote_session()

    # session 1: the node starts all its tasks, every report is acknowledged and lost
    first = asyncio.create_task(session._session(InProcessClient(dispatcher, lose_reports=True)))  # type: ignore[arg-type]
    await session.connected.wait()
    await session.report([StatusUpdate(t, status("running")) for t in ids])
    await session.report([StatusUpdate(t, status("shutdown")) for t in ids[:10]])
    assert all(store.view().get("task", t).status.state == "assigned" for t in ids)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)

    # the leader marked it down meanwhile and the orchestrator shut its tasks down
    def shut_down(tx: Tx) -> None:
        node = tx.get("node", "w1")
        node.status.state = "down"
        tx.update("node", node)
        for task in tx.find("task", lambda t: t.node_id == "w1"):
            task.desired_state = "shutdown"
            tx.update("task", task)

    await store.update(shut_down)

    # session 2: every task held is reported again; none stays assigned
    second = asyncio.create_task(session._session(InProcessClient(dispatcher)))  # type: ignore[arg-type]
    await until(lambda: all(store.view().get("task", t).status.state != "assigned" for t in ids))
    states = {t: store.view().get("task", t).status.state for t in ids}
    assert all(states[t] == "shutdown" for t in ids[:10])
    assert all(states[t] == "running" for t in ids[10:])
    assert store.view().get("node", "w1").status.state == "ready"
    # the node then stops the rest: all terminal
    await session.report([StatusUpdate(t, status("shutdown")) for t in ids[10:]])
    assert all(is_terminal(store.view().get("task", t).status.state) for t in ids)
    second.cancel()
    await asyncio.gather(second, return_exceptions=True)


async def test_a_stale_held_report_does_not_end_the_session(tmp_path: Path) -> None:
    store = local_store(tmp_path)
    ids = await seed(store, 3)
    dispatcher = Dispatcher(store, "m1")
    dispatcher.leading = True
    session = remote_session()
    session._held = {t: StatusUpdate(t, status("running")) for t in ids}

    def already_failed(tx: Tx) -> None:  # the store moved on while the node was away
        task = tx.get("task", ids[0])
        task.status = status("failed")
        tx.update("task", task)

    await store.update(already_failed)
    run = asyncio.create_task(session._session(InProcessClient(dispatcher)))  # type: ignore[arg-type]
    await until(lambda: store.view().get("task", ids[2]).status.state == "running")
    assert store.view().get("task", ids[0]).status.state == "failed"
    assert store.view().get("task", ids[1]).status.state == "running"
    assert not run.done()
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)


async def test_tasks_of_a_node_that_never_returns_are_orphaned(tmp_path: Path) -> None:
    store = local_store(tmp_path)
    ids = await seed(store, 5)
    now = [100.0]
    dispatcher = Dispatcher(store, "m1", clock=lambda: now[0], orphan_timeout=60.0)

    def done_one(tx: Tx) -> None:
        task = tx.get("task", ids[0])
        task.status = status("complete")
        tx.update("task", task)

    await store.update(done_one)
    loop = asyncio.create_task(dispatcher.run())
    await until(lambda: "w1" in dispatcher.liveness.tracked())
    now[0] += 20.0  # past the heartbeat grace (3 x 5 s)
    dispatcher._wake.set()
    await until(lambda: store.view().get("node", "w1").status.state == "down")
    now[0] += 30.0
    dispatcher._wake.set()
    await asyncio.sleep(0.05)
    assert store.view().get("task", ids[1]).status.state == "assigned"  # not yet
    now[0] += 31.0
    dispatcher._wake.set()
    await until(lambda: store.view().get("task", ids[1]).status.state == "orphaned")
    states = [store.view().get("task", t).status.state for t in ids]
    assert states == ["complete"] + ["orphaned"] * 4
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)


class StalledLog:
    """A log whose commits wait until released (a store busy with a slow apply)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.release = asyncio.Event()
        self.release.set()

    async def propose(self, batch: bytes) -> None:
        await self.release.wait()
        self.store.apply(batch)


async def test_a_heartbeat_is_answered_while_the_store_is_stalled() -> None:
    store = Store()
    log = StalledLog(store)
    store.attach(log)
    await seed(store, 1)
    dispatcher = Dispatcher(store, "m1")
    dispatcher.leading = True
    log.release.clear()
    writer = asyncio.create_task(store.update(lambda tx: tx.create("node", Node(id="w2"))))
    await asyncio.sleep(0.01)
    assert not writer.done()
    response = await timeouts.wait_for(dispatcher.heartbeat(Empty(), CALLER), 1.0)
    assert isinstance(response, HeartbeatResponse)
    assert msgspec.to_builtins(response)["period"] == dispatcher.liveness.period
    log.release.set()
    await writer


async def test_a_follower_names_the_leader_and_the_worker_goes_there(tmp_path: Path) -> None:
    store = local_store(tmp_path)
    await seed(store, 1)

    def managers(tx: Tx) -> None:
        for node_id, leader in (("m1", False), ("m2", True)):
            status = ManagerStatus(leader=leader, addr=f"{node_id}:2377")
            tx.create("node", Node(id=node_id, manager_status=status))

    await store.update(managers)
    follower = Dispatcher(store, "m1")
    with pytest.raises(Unavailable) as refused:
        await follower.heartbeat(Empty(), CALLER)
    assert "the leader is at m2:2377" in refused.value.message
    session = RemoteSession(["m1:2377", "m3:2377"], lambda: None, "w1", "10.0.0.2")  # type: ignore[arg-type,return-value]
    assert session._follow_leader(f"heartbeat unanswered: {refused.value.message}")
    assert session.managers == ["m2:2377", "m1:2377", "m3:2377"]
    assert session.managers[(session._index + 1) % 3] == "m2:2377"


class CountingDispatcher(Dispatcher):
    builds = 0

    def _message(self, node_id: str) -> SessionMessage:
        self.builds += 1
        return super()._message(node_id)


async def test_a_session_behind_many_commits_builds_one_message_for_them(tmp_path: Path) -> None:
    store = local_store(tmp_path)
    ids = await seed(store, 10)
    dispatcher = CountingDispatcher(store, "m1")
    dispatcher.leading = True
    stream = dispatcher.session(SessionRequest(hostname="w1", addr="10.0.0.2"), CALLER)
    first = await anext(stream)
    assert [t.status.state for t in first.tasks] == ["assigned"] * 10
    for task_id in ids:  # ten commits while the session's message is not being read

        def fn(tx: Tx, task_id: str = task_id) -> None:
            task = tx.get("task", task_id)
            task.status = status("running")
            tx.update("task", task)

        await store.update(fn)
    builds = dispatcher.builds
    message = await anext(stream)
    assert [t.status.state for t in message.tasks] == ["running"] * 10
    waiting = asyncio.ensure_future(anext(stream))  # the commits seen: it only waits now
    for _ in range(50):
        await asyncio.sleep(0)
    assert not waiting.done()
    assert dispatcher.builds == builds + 1  # not one per commit
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
