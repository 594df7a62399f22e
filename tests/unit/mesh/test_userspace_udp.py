"""The userspace mesh's UDP side over loopback: flows balanced in turn and sticky, replies
from the published port, removal rebalances, idle timeout, flow cap, PROXY v2, refusal."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from shoal.mesh.errors import MeshError
from shoal.mesh.userspace import UserspaceDataPlane
from shoal.mesh.userspace.udp import UdpListener
from shoal.workloads.whoami import Whoami
from tests.polling import eventually
from tests.unit.mesh.userspace_support import UdpClient, backends, endpoint, free_port, port, state


@pytest.fixture
async def plane() -> AsyncIterator[UserspaceDataPlane]:
    dp = UserspaceDataPlane("127.0.0.1", kernel_table=None, udp_idle_timeout=30.0)
    yield dp
    await dp.close()


@pytest.fixture
async def web() -> AsyncIterator[tuple[list[Whoami], int]]:
    apps, target = await backends(3)
    yield apps, target
    for app in apps:
        app.close()


@pytest.fixture
async def clients() -> AsyncIterator[list[UdpClient]]:
    made = [await UdpClient.open() for _ in range(9)]
    yield made
    for client in made:
        client.close()


def udp_listener(plane: UserspaceDataPlane, published: int) -> UdpListener:
    listener = plane.listener("udp", published)
    assert isinstance(listener, UdpListener)
    return listener


async def test_flows_are_balanced_in_turn_and_stick(plane, web, clients) -> None:
    _, target = web
    published = free_port()
    await plane.apply(state([port(published, target, "udp")], [endpoint(i) for i in range(3)]))
    firsts = [await c.ask(published) for c in clients]
    assert Counter(a["task"] for a, _ in firsts) == {"web.1": 3, "web.2": 3, "web.3": 3}
    # the answer comes from the published port, from the address the client wrote to
    assert {addr for _, addr in firsts} == {("127.0.0.1", published)}
    # the backend sees the proxy's flow socket, not the client
    assert all(a["client"] != c.address for (a, _), c in zip(firsts, clients, strict=True))
    for (first, _), client in zip(firsts, clients, strict=True):
        again = [(await client.ask(published))[0]["task"] for _ in range(3)]
        assert again == [first["task"]] * 3  # a flow stays on its task
    assert len(udp_listener(plane, published).flows) == 9
    traffic = (await plane.traffic())[("udp", published)]
    assert traffic.connections == 9  # flows, not datagrams
    assert traffic.bytes > 9 * 4 * 2  # 4 questions and 4 answers per flow


async def test_a_connected_client_socket_gets_its_answers(plane, web) -> None:
    _, target = web
    published = free_port()
    await plane.apply(state([port(published, target, "udp")], [endpoint(0)]))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.connect(("127.0.0.1", published))  # accepts only what comes from there
        sock.send(b"x")
        assert b"task: web.1" in await asyncio.to_thread(sock.recv, 65536)


async def test_a_flow_whose_backend_left_moves_on_its_next_datagram(plane, web, clients) -> None:
    _, target = web
    published = free_port()
    eps = [endpoint(i) for i in range(3)]
    await plane.apply(state([port(published, target, "udp")], eps))
    client = clients[0]
    assert (await client.ask(published))[0]["task"] == "web.1"
    listener = udp_listener(plane, published)
    await plane.apply(state([port(published, target, "udp")], eps[1:]))
    assert not listener.flows  # closed with the pool change, like a conntrack flush
    moved = (await client.ask(published))[0]["task"]
    assert moved in {"web.2", "web.3"}
    assert [(await client.ask(published))[0]["task"] for _ in range(3)] == [moved] * 3
    assert plane.listener("udp", published) is listener  # no re-bind


async def test_idle_flows_expire(web, clients) -> None:
    _, target = web
    plane = UserspaceDataPlane("127.0.0.1", kernel_table=None, udp_idle_timeout=0.2)
    try:
        published = free_port()
        await plane.apply(state([port(published, target, "udp")], [endpoint(0)]))
        await clients[0].ask(published)
        await clients[1].ask(published)
        listener = udp_listener(plane, published)
        assert len(listener.flows) == 2
        await eventually(lambda: not listener.flows, what="idle flows closed")
        assert (await clients[0].ask(published))[0]["task"] == "web.1"  # a new flow
    finally:
        await plane.close()


async def test_the_flow_table_is_capped(web, clients) -> None:
    _, target = web
    plane = UserspaceDataPlane("127.0.0.1", kernel_table=None, udp_idle_timeout=0.3,
                               udp_max_flows=2)
    try:
        published = free_port()
        await plane.apply(state([port(published, target, "udp")], [endpoint(0)]))
        await clients[0].ask(published)
        await clients[1].ask(published)
        with pytest.raises(TimeoutError):
            await clients[2].ask(published, timeout=0.2)
        listener = udp_listener(plane, published)
        await eventually(lambda: not listener.flows, what="idle flows closed")
        assert (await clients[2].ask(published))[0]["task"] == "web.1"
    finally:
        await plane.close()


async def test_no_ready_endpoint_drops(plane, web, clients) -> None:
    _, target = web
    published = free_port()
    await plane.apply(state([port(published, target, "udp")], []))
    with pytest.raises(TimeoutError):
        await clients[0].ask(published, timeout=0.3)
    assert not udp_listener(plane, published).flows
    await plane.apply(state([port(published, target, "udp")], [endpoint(0)]))
    assert (await clients[0].ask(published))[0]["task"] == "web.1"


async def test_proxy_protocol_on_every_datagram(plane, clients) -> None:
    apps, target = await backends(1, proxy_protocol=True)
    try:
        published = free_port()
        await plane.apply(state([port(published, target, "udp", proxy=True)], [endpoint(0)]))
        for client in clients[:2]:
            for _ in range(2):
                answer, _ = await client.ask(published)
                assert answer["client"] == client.address
                assert answer["proxy"].startswith("127.0.0.")
    finally:
        apps[0].close()


async def test_a_busy_udp_port_is_an_error_naming_it(plane, web) -> None:
    _, target = web
    busy = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", busy))
        with pytest.raises(MeshError, match=f"udp/{busy}"):
            await plane.apply(state([port(busy, target, "udp")], [endpoint(0)]))
    assert plane.ports == []


async def test_a_backend_whose_port_is_closed_is_left_for_the_next_datagram(
    plane, web, clients
) -> None:
    apps, target = web
    published = free_port()
    await plane.apply(state([port(published, target, "udp")], [endpoint(0), endpoint(1)]))
    client = clients[0]
    assert (await client.ask(published))[0]["task"] == "web.1"
    apps[0].close()  # the task is gone, the table does not know yet
    listener = udp_listener(plane, published)
    # the ICMP port unreachable closes the flow; a later datagram is balanced anew
    client.transport.sendto(b"x", ("127.0.0.1", published))  # type: ignore[union-attr]
    await eventually(lambda: not listener.flows, what="the flow to the closed port dropped")
    assert (await client.ask(published))[0]["task"] == "web.2"
