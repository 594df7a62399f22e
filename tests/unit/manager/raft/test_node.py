"""The driver alone and with one or two peers: bad input from peers, leadership
callbacks driving the node's Manager, requests on a stopped node, a transport that
breaks its contract, and the in-memory network's knobs."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import replace
from pathlib import Path

import pytest

from shoal.manager.controlapi.services import create_service
from shoal.manager.leader import Reconcilers
from shoal.manager.raft import (
    InMemoryNetwork,
    NotLeader,
    RaftNode,
    SQLiteStorage,
    StoreStateMachine,
)
from shoal.manager.raft.outbox import Outbox
from shoal.manager.state.store import Store
from shoal.raft import Entry, Message, MessageType, encode_message
from tests.unit.manager.raft.cluster import FAST, Cluster, services, spec


async def test_malformed_misaddressed_and_oversized_messages_are_dropped_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    c = Cluster(tmp_path, 3, seed=6, config=replace(FAST, max_message_bytes=64 << 10))
    c.start_all()
    try:
        leader = await c.wait_leader()
        node = leader.node
        term = node.term
        huge = Entry(term=term, index=node.committed + 1, data=b"x" * (100 << 10))
        with caplog.at_level(logging.WARNING, logger="shoal.manager.raft.node"):
            await node.receive_frames(
                [
                    b"\x00garbage",
                    b"\x93" * 100,
                    encode_message(Message(MessageType.HEARTBEAT, from_=2, to=99, term=term)),
                    encode_message(
                        Message(MessageType.APP, 2, leader.id, term=term + 5, entries=(huge,))
                    ),
                ]
            )
            await node.receive(
                [
                    Message(MessageType.HUP, from_=2, to=leader.id),
                    Message(MessageType.APP, 0, leader.id, term=term + 9),
                    Message(
                        MessageType.APP,
                        2,
                        leader.id,
                        term=term + 9,
                        index=3,
                        entries=(Entry(term=1, index=9),),
                    ),
                ]
            )
        dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
        assert len(dropped) == 7, dropped
        assert any("exceed" in d for d in dropped) and any("malformed" in d for d in dropped)
        # nothing reached the core: same leader, same term, writes go on
        await create_service(leader.store, spec("still-fine"))
        assert node.term == term and node.is_leader
        await c.wait_converged()
    finally:
        await c.close()


async def test_leadership_callbacks_start_and_stop_the_managers_reconcilers(
    tmp_path: Path,
) -> None:
    c = Cluster(tmp_path, 3, seed=7)
    managers: dict[int, Reconcilers] = {}

    def wire(i: int) -> None:
        m = c.start(i)
        mgr = managers[i] = Reconcilers(m.store)
        m.node.on_leadership(lambda lead: mgr.become_leader() if lead else mgr.become_follower())

    for i in c.managers:
        wire(i)
    try:
        leader = await c.wait_leader()
        await c.until(lambda: managers[leader.id].running, 5, "reconcilers on the leader")
        assert all(not managers[i].running for i in c.managers if i != leader.id)
        await c.stop(leader.id)
        assert not managers[leader.id].running
        new = await c.wait_leader()
        await c.until(lambda: managers[new.id].running, 5, "reconcilers on the new leader")
    finally:
        for mgr in managers.values():
            await mgr.become_follower()
        await c.close()


async def test_a_single_manager_bootstraps_campaigns_and_commits(tmp_path: Path) -> None:
    storage = SQLiteStorage.open(tmp_path / "raft.db")
    storage.bootstrap((1,))
    store = Store()
    node = RaftNode(1, storage, InMemoryNetwork().transport(1), StoreStateMachine(store), FAST)
    with pytest.raises(NotLeader):  # not running yet
        await node.propose(b"x")
    task = asyncio.create_task(node.run())
    try:
        node.campaign()
        await node.wait_until(lambda: node.leader_ready, 5)
        from shoal.manager.raft import RaftLog

        store.attach(RaftLog(node))
        await create_service(store, spec("solo"))
        assert await node.read_index() >= node.applied - 1
    finally:
        await node.stop()
        await task
        await storage.aclose()
    with pytest.raises(NotLeader):
        await node.propose(b"x")
    # restart from the file: the store is rebuilt from the log
    storage = SQLiteStorage.open(tmp_path / "raft.db")
    store2 = Store()
    node2 = RaftNode(1, storage, InMemoryNetwork().transport(1), StoreStateMachine(store2), FAST)
    task = asyncio.create_task(node2.run())
    try:
        await node2.wait_until(lambda: node2.leader_ready, 5)
        assert [s.spec.name for s in store2.view().list("service")] == ["solo"]
    finally:
        await node2.stop()
        await task
        storage.close()


class _BrokenTransport:
    def __init__(self) -> None:
        self.calls = 0

    def bind(self, reporter: object) -> None:
        pass

    async def send(self, to: int, messages: list[Message]) -> None:
        self.calls += 1
        raise ConnectionResetError("boom")


async def test_a_transport_that_raises_does_not_kill_the_node(tmp_path: Path) -> None:
    storage = SQLiteStorage.open(tmp_path / "raft.db")
    storage.bootstrap((1, 2, 3))
    transport = _BrokenTransport()
    node = RaftNode(1, storage, transport, StoreStateMachine(Store()), FAST, rng=random.Random(1))
    task = asyncio.create_task(node.run())
    try:
        node.campaign()
        await node.wait_until(lambda: transport.calls >= 4, 5)
        assert node.running and not task.done()
    finally:
        await node.stop()
        await task
        storage.close()


async def test_network_knobs_drop_and_one_way_cuts(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 3, seed=8)
    c.net.drop_rate = 0.2
    c.net.wire = True  # every message through the codec
    c.start_all()
    try:
        for i in range(10):
            await c.write(lambda s, i=i: create_service(s, spec(f"lossy{i}")))
        assert c.net.stats.dropped > 0
        c.net.drop_rate = 0.0
        leader = await c.wait_leader()
        follower = next(m for m in c.up() if m is not leader)
        c.net.cut(leader.id, follower.id, both=False)  # the follower hears nothing
        await c.write(lambda s: create_service(s, spec("one-way")))
        await c.until(lambda: c.net.stats.unreachable > 0, 5, "the cut to be reported")
        c.net.heal()
        await c.wait_converged()
        assert "one-way" in services(follower)
    finally:
        await c.close()


class _CancelSwallowingTransport:
    """A send that, cancelled, returns as if it had sent (what 3.11's `wait_for` did when
    the write finished in the same turn as the cancellation)."""

    def __init__(self) -> None:
        self.sending = asyncio.Event()

    def bind(self, reporter: object) -> None:
        pass

    async def send(self, to: int, messages: list[Message]) -> None:
        self.sending.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            return


async def test_a_sender_whose_send_drops_the_cancellation_still_stops() -> None:
    transport = _CancelSwallowingTransport()
    outbox = Outbox(1, transport, 8, lambda peer: None)

    class _Stop(Exception):
        pass

    async def group() -> None:
        async with asyncio.TaskGroup() as tg:
            outbox.start(tg)
            outbox.put(Message(MessageType.APP, to=2, from_=1, term=1))
            await transport.sending.wait()
            raise _Stop

    task = asyncio.create_task(group())
    done, _ = await asyncio.wait({task}, timeout=10)
    assert task in done, "the group never ended: its sender kept running after the cancel"
    with pytest.raises(ExceptionGroup) as caught:
        task.result()
    assert caught.group_contains(_Stop)
