"""A report the connected manager cannot take yet is retried on the same session.

Seen in the 300-task lab burst (issue 13): a leader elected mid-burst refused a node's last
`running` report (Unavailable: not yet able to commit); the node had no later report and
kept its session, so the task stayed `starting` in the store for good.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from shoal.api.session import StatusUpdate
from shoal.cluster.wire import StatusRequest
from shoal.errors import Unavailable
from shoal.manager.dispatcher.dispatcher import Dispatcher
from tests.polling import eventually as until
from tests.unit.manager.stores import local_store
from tests.unit.manager.test_dispatcher_load import (
    InProcessClient,
    remote_session,
    seed,
    status,
)


class NotReadyYet(InProcessClient):
    """Refuses the first `refusals` status calls as a leader that cannot commit yet."""

    def __init__(self, dispatcher: Dispatcher, refusals: int) -> None:
        super().__init__(dispatcher)
        self.refusals = refusals
        self.status_calls = 0

    async def call(self, method: str, req: Any, kind: type, timeout: float = 0) -> Any:
        if method == "Dispatcher/UpdateTaskStatus":
            assert isinstance(req, StatusRequest)
            self.status_calls += 1
            if self.refusals > 0:
                self.refusals -= 1
                raise Unavailable("raft: not the leader (leader 0)")
        return await super().call(method, req, kind, timeout)


async def test_a_kept_report_is_retried_without_a_new_report_or_session(tmp_path: Path) -> None:
    store = local_store(tmp_path)
    ids = await seed(store, 3)
    dispatcher = Dispatcher(store, "m1")
    dispatcher.leading = True
    session = remote_session()
    client = NotReadyYet(dispatcher, refusals=3)
    run = asyncio.create_task(session._session(client))  # type: ignore[arg-type]
    await session.connected.wait()
    await session.report([StatusUpdate(t, status("running")) for t in ids])  # refused: kept
    assert all(store.view().get("task", t).status.state == "assigned" for t in ids)
    await until(lambda: all(store.view().get("task", t).status.state == "running" for t in ids))
    assert client.status_calls >= 4  # three refusals, then the retry that got through
    assert not session._pending
    assert not run.done()  # the same session
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)


class ClosedUnderTheCall(InProcessClient):
    """The first status call is cancelled under the caller, as grpc.aio does when the
    session's channel is closed while the call is in flight."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        super().__init__(dispatcher)
        self.cancelled = False

    async def call(self, method: str, req: Any, kind: type, timeout: float = 0) -> Any:
        if method == "Dispatcher/UpdateTaskStatus" and not self.cancelled:
            self.cancelled = True
            raise asyncio.CancelledError
        return await super().call(method, req, kind, timeout)


async def test_a_call_cancelled_by_a_closing_channel_keeps_the_reports(tmp_path: Path) -> None:
    store = local_store(tmp_path)
    ids = await seed(store, 3)
    dispatcher = Dispatcher(store, "m1")
    dispatcher.leading = True
    session = remote_session()
    run = asyncio.create_task(session._session(ClosedUnderTheCall(dispatcher)))  # type: ignore[arg-type]
    await session.connected.wait()
    # the agent's reporter awaits this: it must not end with CancelledError
    await session.report([StatusUpdate(t, status("running")) for t in ids])
    await until(lambda: all(store.view().get("task", t).status.state == "running" for t in ids))
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
