"""The network view managers compute, and the leader's gossip key rotation."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from shoal.api.netview import NetPeer, network_view
from shoal.api.types import Node, NodeStatus, Swarm, Task, TaskStatusInfo
from shoal.manager.netview.keys import KeyManager, rotate
from shoal.manager.state.locallog import LocalLog
from shoal.manager.state.store import Store


def _task(tid: str, node: str, state: str, desired: str = "running") -> Task:
    return Task(id=tid, node_id=node, desired_state=desired, status=TaskStatusInfo(state=state))


def test_view_lists_connected_allocated_nodes_and_live_tasks() -> None:
    nodes = [
        Node(id="b", subnet="198.19.2.0/24", status=NodeStatus(addr="198.18.0.12"),
             gossip_addr="198.18.0.12:7946"),
        Node(id="a", subnet="198.19.1.0/24", status=NodeStatus(addr="198.18.0.11")),
        Node(id="c", subnet="", status=NodeStatus(addr="198.18.0.13")),  # no slice yet
        Node(id="d", subnet="198.19.4.0/24", status=NodeStatus(addr="0.0.0.0")),  # no addr
    ]
    tasks = [
        _task("t1", "a", "running"),
        _task("t2", "b", "starting"),
        _task("t3", "b", "failed"),  # terminal
        _task("t4", "a", "running", desired="shutdown"),  # being stopped
        _task("t5", "", "pending"),  # not placed
    ]
    view = network_view(nodes, [Swarm(data_path_port=4790, network_keys=[b"k" * 32])], tasks)
    assert view.peers == (
        NetPeer("a", "198.18.0.11", "198.19.1.0/24", ""),
        NetPeer("b", "198.18.0.12", "198.19.2.0/24", "198.18.0.12:7946"),
    )
    assert view.data_path_port == 4790 and view.keys == (b"k" * 32,)
    assert view.live == {("a", "t1"), ("b", "t2")}
    # no cluster object yet: the default port, no keys
    empty = network_view([], [], [])
    assert empty.data_path_port == 4789 and empty.keys == () and empty.live == frozenset()


def test_rotate_puts_the_fresh_key_first_and_keeps_the_newest() -> None:
    assert rotate([], b"a", 3) == [b"a"]
    assert rotate([b"b", b"a"], b"c", 3) == [b"c", b"b", b"a"]
    assert rotate([b"c", b"b", b"a"], b"d", 3) == [b"d", b"c", b"b"]
    assert rotate([b"a"], b"a", 3) == [b"a"]


async def test_the_leader_makes_a_key_then_rotates_on_time(tmp_path: Path) -> None:
    store = Store()
    log = LocalLog(tmp_path / "state.db", store)
    log.restore()
    store.attach(log)
    await store.update(lambda tx: tx.create("cluster", Swarm(id="c1")))
    now = [0.0]
    counter = itertools.count()
    keys = KeyManager(
        store, interval=100.0, keep=2, new_key=lambda: bytes([next(counter)]) * 32,
        clock=lambda: now[0],
    )
    assert await keys.reconcile() == 100.0
    assert store.view().list("cluster")[0].network_keys == [b"\0" * 32]
    assert await keys.reconcile() == 100.0  # the timer starts now
    now[0] = 60.0
    assert await keys.reconcile() == 40.0
    now[0] = 100.0
    await keys.reconcile()
    assert store.view().list("cluster")[0].network_keys == [b"\1" * 32, b"\0" * 32]
    now[0] = 200.0
    await keys.reconcile()
    assert store.view().list("cluster")[0].network_keys == [b"\2" * 32, b"\1" * 32]
    await asyncio.sleep(0)
    log.close()


def test_view_carries_each_services_name_vip_and_aliases_per_network() -> None:
    from shoal.api.netview import NetService
    from shoal.api.types import (
        Endpoint,
        NetworkAttachmentConfig,
        Service,
        ServiceSpec,
        TaskSpec,
    )

    web = Service(
        id="s1",
        spec=ServiceSpec(name="st_web", task_template=TaskSpec(networks=[
            NetworkAttachmentConfig(target="n1", aliases=["web"]),
            NetworkAttachmentConfig(target="n2"),
        ])),
        endpoint=Endpoint(virtual_ips=[{"NetworkID": "n1", "Addr": "198.18.1.2/24"}]),
    )
    bare = Service(id="s2", spec=ServiceSpec(name="bare"))
    view = network_view([], [], [], [web, bare])
    assert view.services == (
        NetService("s1", "st_web", "n1", "198.18.1.2", ("web",)),
        NetService("s1", "st_web", "n2", "", ()),  # no VIP there: dnsrr answers
    )
