"""The log broker alone (no network): subscriptions handed to listening nodes only, lines
of tasks not asked of a node dropped, a silent node given up after the idle timeout (never
a hang), the subscriber's end told to every node, publishing into an ended subscription
stops, new tasks handed over while following."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shoal import timeouts
from shoal.agent.log_publisher import SubscriptionReader
from shoal.api.types import ContainerSpec, Task, TaskSpec, TaskStatusInfo
from shoal.ca.certs import NodeIdentity
from shoal.cluster.server import Caller
from shoal.cluster.wire import LogBatch, LogEntry, LogsRequest, LogSubscription, PublishLogsRequest
from shoal.errors import Unavailable
from shoal.manager.logbroker import LogBroker
from shoal.manager.state.store import Store, Tx
from tests.polling import eventually
from tests.unit.manager.stores import local_store


def task(tid: str, node: str) -> Task:
    return Task(id=tid, service_id="svc", node_id=node,
                spec=TaskSpec(container_spec=ContainerSpec(image="busybox")),
                desired_state="running", status=TaskStatusInfo(state="running"))


async def add(store: Store, *tasks: Task) -> None:
    def fn(tx: Tx) -> None:
        for t in tasks:
            tx.create("task", t)

    await store.update(fn)


def caller(node: str) -> Caller:
    return Caller(NodeIdentity(node, "worker", "c1"), "127.0.0.1:1")


async def requests(*items: PublishLogsRequest) -> AsyncIterator[PublishLogsRequest]:
    for item in items:
        yield item


@pytest.fixture
async def store(tmp_path: Path) -> Store:
    s = local_store(tmp_path)
    await add(s, task("t1", "n1"), task("t2", "n2"), task("t3", "mgr"))
    return s



async def next_sub(listener: AsyncIterator[LogSubscription]) -> LogSubscription:
    return await timeouts.wait_for(anext(listener), 5)


async def test_lines_from_listening_nodes_and_the_local_one(store: Store, tmp_path: Path) -> None:
    log = tmp_path / "t3.jsonl"
    log.write_text(json.dumps({"time": "2026-01-01T00:00:05Z", "stream": "stdout",
                               "log": "local"}) + "\n")
    broker = LogBroker(store, "mgr", lambda: True, idle_timeout=0.5,
                       local_reader=lambda sub: SubscriptionReader(
                           sub, lambda t: tmp_path / f"{t}.jsonl"))  # fmt: skip
    n1 = broker.listen(None, caller("n1"))  # type: ignore[arg-type]
    n2 = broker.listen(None, caller("n2"))  # type: ignore[arg-type]
    first_n1 = asyncio.ensure_future(next_sub(n1))
    first_n2 = asyncio.ensure_future(next_sub(n2))
    await asyncio.sleep(0)
    subscription = broker.subscribe(LogsRequest(service_id="svc"))
    got: list[LogBatch] = []

    async def consume() -> None:
        async for batch in subscription:
            got.append(batch)

    consumer = asyncio.ensure_future(consume())
    s1, s2 = await first_n1, await first_n2
    assert (s1.tasks, s2.tasks) == (["t1"], ["t2"]) and s1.id == s2.id
    # n1 also tries to publish a line of t2, not asked of it: dropped
    await broker.publish(requests(
        PublishLogsRequest(s1.id, [LogEntry("t1", "2026-01-01T00:00:01Z", "stdout", "one"),
                                   LogEntry("t2", "2026-01-01T00:00:01Z", "stdout", "forged")]),
        PublishLogsRequest(s1.id, close=True)), caller("n1"))  # fmt: skip
    await broker.publish(requests(
        PublishLogsRequest(s2.id, [LogEntry("t2", "2026-01-01T00:00:02Z", "stderr", "two")],
                           close=True)), caller("n2"))  # fmt: skip
    await timeouts.wait_for(consumer, 5)
    lines = sorted((e.task_id, e.text) for b in got for e in b.entries)
    assert lines == [("t1", "one"), ("t2", "two"), ("t3", "local")]
    assert not any(b.missing for b in got)
    assert {t: n for b in got for t, n in b.nodes.items()} == {"t1": "n1", "t2": "n2",
                                                               "t3": "mgr"}  # fmt: skip
    # the subscription is over: n1 is told to close it, and a late publish stops at once
    closing = await next_sub(n1)
    assert closing.close and closing.id == s1.id
    await timeouts.wait_for(broker.publish(requests(PublishLogsRequest(s1.id, [])),
                                           caller("n1")), 1)  # fmt: skip
    assert not broker.subscriptions


async def test_a_silent_or_absent_node_is_missing_never_waited_for(store: Store) -> None:
    broker = LogBroker(store, "mgr", lambda: True, idle_timeout=0.3)
    n1 = broker.listen(None, caller("n1"))  # type: ignore[arg-type]
    pending = asyncio.ensure_future(next_sub(n1))
    await asyncio.sleep(0)
    got = [b async for b in broker.subscribe(LogsRequest(service_id="svc"))]
    await pending
    # n2 not listening, mgr has no local reader: missing at once; n1 silent: given up
    assert [sorted(b.missing) for b in got] == [["mgr", "n2"], ["n1"]]


async def test_follow_hands_new_tasks_over_and_the_end_closes_everywhere(store: Store) -> None:
    broker = LogBroker(store, "mgr", lambda: True, rescan=0.05)
    n1 = broker.listen(None, caller("n1"))  # type: ignore[arg-type]
    pending = asyncio.ensure_future(next_sub(n1))
    await asyncio.sleep(0)
    subscription = broker.subscribe(LogsRequest(service_id="svc", follow=True))
    got: list[str] = []

    async def consume() -> None:
        async for batch in subscription:
            got.extend(e.text for e in batch.entries)

    consumer = asyncio.ensure_future(consume())
    first = await pending
    assert first.follow and first.tasks == ["t1"]
    await add(store, task("t4", "n1"))
    again = await next_sub(n1)
    assert again.id == first.id and again.tasks == ["t1", "t4"] and not again.close
    await broker.publish(requests(
        PublishLogsRequest(first.id, [LogEntry("t4", "2026-01-01T00:00:01Z", "stdout", "new")])),
        caller("n1"))  # fmt: skip
    await eventually(lambda: got == ["new"])
    consumer.cancel()  # the subscriber went away
    await asyncio.gather(consumer, return_exceptions=True)
    closing = await next_sub(n1)
    assert closing.close and closing.id == first.id
    assert not broker.subscriptions


async def test_a_follower_broker_refuses_with_the_leader(store: Store) -> None:
    broker = LogBroker(store, "mgr", lambda: False)
    with pytest.raises(Unavailable, match="not the leader"):
        await anext(broker.subscribe(LogsRequest(service_id="svc")))
    with pytest.raises(Unavailable, match="not the leader"):
        await anext(broker.listen(None, caller("n1")))  # type: ignore[arg-type]
