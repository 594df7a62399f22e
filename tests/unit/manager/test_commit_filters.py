"""Watchers of a few kinds wake only on commits that wrote one of them (or a reload).

A burst of secret writes used to wake every reconciler, the network view, the Raft spec
follower and each node session once per commit, each doing a pass over every task.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

from shoal import timeouts
from shoal.api.types import Node, NodeStatus, Secret, SecretSpec
from shoal.manager.reconciler import Reconciler
from shoal.manager.state.store import Store, Tx, commit_of
from tests.unit.manager.stores import local_store


async def add_secret(store: Store, sid: str) -> None:
    def fn(tx: Tx) -> None:
        tx.create("secret", Secret(id=sid, spec=SecretSpec(
            name=sid, data=base64.b64encode(b"x").decode())))

    await store.update(fn)


async def add_node(store: Store, nid: str) -> None:
    await store.update(lambda tx: tx.create("node", Node(id=nid, status=NodeStatus("ready"))))


async def test_commit_of_skips_commits_of_other_kinds(tmp_path: Path) -> None:
    store = local_store(tmp_path)
    queue = store.watch()
    waiter = asyncio.create_task(commit_of(queue, frozenset({"node"})))
    for i in range(5):
        await add_secret(store, f"s{i}")
    await asyncio.sleep(0)
    assert not waiter.done()
    await add_node(store, "n1")
    await timeouts.wait_for(waiter, 5)
    # a reloaded state (a commit without events) always counts
    waiter = asyncio.create_task(commit_of(queue, frozenset({"node"})))
    await asyncio.sleep(0)
    store.publish_reload()
    await timeouts.wait_for(waiter, 5)


class Counting(Reconciler):
    name = "counting"
    kinds = frozenset({"node"})

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.passes = 0

    async def reconcile(self) -> float | None:
        self.passes += 1
        return None


async def test_a_reconciler_passes_on_commits_of_its_kinds_only(tmp_path: Path) -> None:
    store = local_store(tmp_path)
    rec = Counting(store)
    runner = asyncio.create_task(rec.run())

    async def until(n: int) -> None:
        async def wait() -> None:
            while rec.passes < n:
                await asyncio.sleep(0.005)
        await timeouts.wait_for(wait(), 5)

    try:
        await until(1)  # the first pass, at start
        for i in range(10):
            await add_secret(store, f"s{i}")
        await add_node(store, "n1")
        await until(2)
        for i in range(10, 20):
            await add_secret(store, f"s{i}")
        for _ in range(5):
            await asyncio.sleep(0)
        assert rec.passes == 2
        rec.kick()  # a kick still wakes it
        await until(3)
    finally:
        runner.cancel()


async def test_a_managers_published_ports_wake_on_service_commits_only(tmp_path: Path) -> None:
    from shoal.api.types import Service, ServiceSpec
    from shoal.node.mesh_sync import StorePorts

    store = local_store(tmp_path)
    ports = StorePorts(store)
    waiter = asyncio.create_task(ports.changed())
    await add_secret(store, "s1")
    await add_node(store, "n1")
    await asyncio.sleep(0)
    assert not waiter.done()
    await store.update(lambda tx: tx.create("service", Service(id="svc",
                                                               spec=ServiceSpec(name="web"))))
    await timeouts.wait_for(waiter, 5)
    ports.close()
