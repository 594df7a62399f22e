"""Real sockets: gossip nodes on 127.0.0.x in one process, encrypted UDP and TCP."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

import pytest

from shoal import timeouts
from shoal.errors import Conflict, InvalidArgument
from shoal.gossip.config import GossipConfig
from shoal.gossip.crypto import Keyring
from shoal.gossip.endpoints import EndpointEntry, PublishedPort
from shoal.gossip.members import MemberStatus
from shoal.gossip.node import GossipNode, GossipOptions
from tests.polling import eventually as until

K1, K2 = b"\x01" * 32, b"\x02" * 32
# 10 ms ticks: probes every 50 ms, a crashed node is dead within about a second
FAST = GossipConfig(probe_interval=5, probe_timeout=2, gossip_interval=1,
                    push_pull_interval=50, reconnect_interval=20, reconcile_grace=5)


class Cluster:
    def __init__(self, tg: asyncio.TaskGroup) -> None:
        self.tg = tg
        self.nodes: list[GossipNode] = []

    async def start(self, keyring: Keyring, host: int | None = None) -> GossipNode:
        i = len(self.nodes)
        opts = GossipOptions(f"node{i}", bind_host=f"127.0.0.{host or 20 + i}", port=0,
                             tick=0.01, config=FAST, leave_timeout=0.5)
        node = GossipNode(opts, keyring)
        self.nodes.append(node)
        self.tg.create_task(node.run())
        await timeouts.wait_for(node.started(), 5)
        return node

    def live_view(self, node: GossipNode) -> set[str]:
        return {m.node_id for m in node.members() if m.status is MemberStatus.ALIVE}


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with asyncio.TaskGroup() as tg:
        c = Cluster(tg)
        try:
            yield c
        finally:
            for node in c.nodes:
                await node.stop(leave=False)


async def start_many(cluster: Cluster, n: int, key: bytes = K1) -> list[GossipNode]:
    nodes = [await cluster.start(Keyring(key)) for _ in range(n)]
    for node in nodes[1:]:
        assert await node.join([nodes[0].addr]) == 1
    ids = {n.options.node_id for n in nodes}
    await until(lambda: all(cluster.live_view(n) == ids for n in nodes))
    return nodes


def entry(node: GossipNode, task: str) -> EndpointEntry:
    return EndpointEntry("web", task, node.options.node_id, "198.19.1.5", True,
                         (PublishedPort("tcp", 8080, 80),))


async def test_nodes_converge_and_share_entries_and_a_stopped_nodes_vanish(
    cluster: Cluster,
) -> None:
    nodes = await start_many(cluster, 5)
    nodes[1].table.set(entry(nodes[1], "t1"))
    nodes[3].table.set(entry(nodes[3], "t3"))
    await until(lambda: all({e.task_id for e in n.table.entries()} == {"t1", "t3"}
                            for n in nodes))
    assert nodes[4].table.ports() == [("web", "tcp", 8080, 80, "ingress")]
    # graceful: the others hear of the leave
    await nodes[1].stop(leave=True)
    await until(lambda: all({e.task_id for e in n.table.entries()} == {"t3"}
                            for n in nodes if n is not nodes[1]), timeout=3)
    # a crash (no leave): failure detection, then its entries go everywhere
    await nodes[3].stop(leave=False)
    rest = [nodes[0], nodes[2], nodes[4]]
    await until(lambda: all(not n.table.entries() for n in rest), timeout=8)
    for n in rest:
        status = {m.node_id: m.status for m in n.members()}
        assert status["node1"] is MemberStatus.LEFT and status["node3"] is MemberStatus.DEAD


async def test_a_removed_entry_and_a_reconcile_reach_everyone(cluster: Cluster) -> None:
    nodes = await start_many(cluster, 3)
    nodes[0].table.set(entry(nodes[0], "keep"))
    nodes[0].table.set(entry(nodes[0], "drop"))
    nodes[2].table.set(entry(nodes[2], "stale"))
    await until(lambda: all(len(n.table.entries()) == 3 for n in nodes))
    nodes[0].table.remove("drop")
    await until(lambda: all(len(n.table.entries()) == 2 for n in nodes))
    await asyncio.sleep(FAST.reconcile_grace * 0.01 * 2)  # past the grace, in ticks
    for n in nodes:
        n.reconcile({("node0", "keep")})
    await until(lambda: all([e.task_id for e in n.table.entries()] == ["keep"] for n in nodes))


async def test_a_node_with_a_wrong_key_is_shut_out(cluster: Cluster) -> None:
    nodes = await start_many(cluster, 2)
    stranger = await cluster.start(Keyring(K2))
    assert await stranger.join([nodes[0].addr]) == 0
    # its UDP packets are dropped, counted, and change nothing
    stranger.core.join([nodes[0].addr])
    stranger.core.merge_push_pull(nodes[0].core.push_pull_state(join=True))  # learns of them
    await until(lambda: nodes[0]._drops.count > 0 and nodes[1]._drops.count > 0)
    assert all("node2" not in cluster.live_view(n) for n in nodes)


async def test_garbage_on_the_port_is_dropped_and_the_node_keeps_working(
    cluster: Cluster,
) -> None:
    nodes = await start_many(cluster, 2)
    host, port = nodes[0].addr.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for junk in (b"", b"\x01", b"\x01" + b"\x00" * 60, b"\xff" * 5000):
            s.sendto(junk, (host, int(port)))
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"\x00\x00\x00\x05hello")
    await writer.drain()
    assert await timeouts.wait_for(reader.read(), 5) == b""  # closed on us
    writer.close()
    await until(lambda: nodes[0]._drops.count >= 5)
    nodes[1].table.set(entry(nodes[1], "t"))
    await until(lambda: [e.task_id for e in nodes[0].table.entries()] == ["t"])


async def test_key_rotation_without_losing_a_member(cluster: Cluster) -> None:
    rings = [Keyring(K1) for _ in range(3)]
    nodes = [await cluster.start(r) for r in rings]
    for n in nodes[1:]:
        assert await n.join([nodes[0].addr]) == 1
    for r in rings:
        r.install(K2)
    for r in rings:
        r.use(K2)  # one by one: the others still open K1 frames meanwhile
        await asyncio.sleep(0.05)
    for r in rings:
        r.remove(K1)
    newcomer = await cluster.start(Keyring(K2))
    assert await newcomer.join([nodes[0].addr]) == 1
    old_key_only = await cluster.start(Keyring(K1))
    assert await old_key_only.join([nodes[0].addr]) == 0
    ids = {"node0", "node1", "node2", "node3"}
    await until(lambda: all(cluster.live_view(n) == ids for n in [*nodes, newcomer]))
    # nobody was suspected on the way
    assert all(n.core.incarnation == 0 for n in nodes)


async def test_an_idle_node_wakes_for_its_due_ticks_only(cluster: Cluster) -> None:
    """The driver sleeps between the core's due ticks (a probe every 5 ticks when idle)
    while the core's clock keeps up with the real one."""
    nodes = await start_many(cluster, 3)
    await until(lambda: all(cluster.live_view(n) == {"node0", "node1", "node2"} for n in nodes))
    await until(lambda: all(n.core.pending_broadcasts() == 0 for n in nodes))
    loop = asyncio.get_running_loop()
    node = nodes[1]
    for _ in range(20):  # a window in which this loaded host never ran a tick late
        await until(lambda: node.core.awareness == 0
                    and node.core.now >= node._dense_until, 10)
        t0, w0, c0 = loop.time(), node.wakeups, node._catch_up().now
        await asyncio.sleep(0.5)
        if node.core.awareness == 0 and node._dense_until <= c0:
            break
    else:
        pytest.skip("every window had a late tick (an overloaded host ticks every period)")
    ticks = (loop.time() - t0) / node.options.tick
    woke = node.wakeups - w0
    advanced = node._catch_up().now - c0
    # one probe per 5 ticks, a push-pull per 50, a reconnect check per 20 (FAST)
    assert woke <= ticks * (1 / 5 + 1 / 50 + 1 / 20) * 1.5 + 3, (woke, ticks)
    assert woke >= ticks / 5 / 2  # the probes still run
    assert advanced >= ticks * 0.5  # the clock is not left behind
    # and it still notices a stopped member
    await nodes[2].stop(leave=False)
    await until(lambda: any(m.node_id == "node2" and m.status is MemberStatus.DEAD
                            for m in node.members()), 20)


async def test_a_stalled_loop_raises_local_health_and_ticks_every_period_again(
    cluster: Cluster,
) -> None:
    nodes = await start_many(cluster, 2)
    await until(lambda: all(len(cluster.live_view(n)) == 2 for n in nodes))
    await until(lambda: all(n.core.pending_broadcasts() == 0 and n.core.awareness == 0
                            for n in nodes))
    node = nodes[0]
    lag0 = node._dense_until
    time.sleep(0.1)  # the loop stalls for 10 ticks: the next due tick fires late
    await until(lambda: node._dense_until > lag0, 2)  # and counts to local health
    w0, c0 = node.wakeups, node.core.now
    await until(lambda: node.core.now - c0 >= 20, 5)
    # every tick is a wake-up again, while the driver watches its own lateness
    assert node.wakeups - w0 >= 15, (node.wakeups - w0, node.core.now - c0)


def test_bad_options_are_refused() -> None:
    with pytest.raises(InvalidArgument):
        GossipNode(GossipOptions("n", port=70000, advertise_host="127.0.0.1"), Keyring(K1))
    with pytest.raises(InvalidArgument):
        GossipNode(GossipOptions("n", bind_host="0.0.0.0"), Keyring(K1))


async def test_a_taken_port_is_a_clear_error(cluster: Cluster) -> None:
    first = await cluster.start(Keyring(K1))
    host, port = first.addr.rsplit(":", 1)
    second = GossipNode(GossipOptions("x", bind_host=host, port=int(port)), Keyring(K1))
    with pytest.raises(Conflict, match="gossip cannot listen"):
        await second.run()


async def test_stop_before_start_and_twice_is_harmless() -> None:
    node = GossipNode(GossipOptions("n", bind_host="127.0.0.30", port=0, tick=0.01),
                      Keyring(K1))
    await node.stop()
    with contextlib.suppress(RuntimeError):
        node.members()
