"""The userspace mesh's TCP side over loopback: round robin, refusal, endpoint removal,
failover, half-close, flow control, PROXY v2, busy ports, idempotent apply."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from shoal import timeouts
from shoal.mesh.errors import MeshError
from shoal.mesh.userspace import UserspaceDataPlane
from shoal.mesh.userspace.tcp import TcpListener
from shoal.workloads.whoami import Whoami
from tests.polling import eventually
from tests.unit.mesh.userspace_support import (
    backends,
    endpoint,
    free_port,
    get,
    port,
    read_response,
    state,
)


@pytest.fixture
async def plane() -> AsyncIterator[UserspaceDataPlane]:
    dp = UserspaceDataPlane("127.0.0.1", kernel_table=None, connect_timeout=0.5)
    yield dp
    await dp.close()


@pytest.fixture
async def web() -> AsyncIterator[tuple[list[Whoami], int]]:
    apps, target = await backends(3)
    yield apps, target
    for app in apps:
        app.close()


async def refused(published: int) -> bool:
    """True if a connection to `published` is refused or reset without an answer."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", published)
    except ConnectionRefusedError:
        return True
    try:
        writer.write(b"GET / HTTP/1.1\r\n\r\n")
        data = await timeouts.wait_for(reader.read(), 2.0)
        return data == b""
    except ConnectionResetError:
        return True
    finally:
        writer.close()


async def test_round_robin_over_three_backends(plane, web) -> None:
    _, target = web
    published = free_port()
    await plane.apply(state([port(published, target)], [endpoint(i) for i in range(3)]))
    answers = [await get(published) for _ in range(30)]
    assert Counter(a["task"] for a in answers) == {"web.1": 10, "web.2": 10, "web.3": 10}
    # turn by turn, like numgen inc over the sorted endpoints
    assert [a["task"] for a in answers[:3]] == ["web.1", "web.2", "web.3"]
    # without PROXY protocol the task sees the proxy, from the node (here: loopback)
    assert all(a["client"].startswith("127.0.0.") and "proxy" not in a for a in answers)
    # the listener's own counters: every connection relayed, both directions' bytes
    [(key, traffic)] = (await plane.traffic()).items()
    request = len(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert key == ("tcp", published) and traffic.connections == 30
    assert traffic.bytes > 30 * (request + len("HTTP/1.1 200 OK\r\n"))


async def test_no_ready_endpoint_refuses_at_once(plane, web) -> None:
    _, target = web
    empty, remote, host_port = free_port(), free_port(), free_port()
    await plane.apply(state(
        [port(empty, target, service="db"), port(remote, target),
         port(host_port, target, mode="host")],
        [endpoint(0, ready=False), endpoint(1, node="n2")],  # db: no task at all
    ))
    assert plane.listener("tcp", empty) is not None  # an ingress port stays open...
    assert plane.listener("tcp", host_port) is None  # ...host mode opens only with a local task
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ConnectionResetError):
        reader, writer = await asyncio.open_connection("127.0.0.1", empty)
        writer.write(b"GET / HTTP/1.1\r\n\r\n")
        await timeouts.wait_for(reader.read(), 2.0)
    assert loop.time() - started < 1.0
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", host_port)
    # ingress balances over every node's endpoints: n2's endpoint serves `remote`
    assert (await get(remote))["task"] == "web.2"


async def test_removed_endpoint_gets_no_new_connection_and_old_ones_finish(plane, web) -> None:
    _, target = web
    published = free_port()
    await plane.apply(state([port(published, target)], [endpoint(i) for i in range(3)]))
    reader, writer = await asyncio.open_connection("127.0.0.1", published)
    writer.write(b"GET / HTTP/1.1\r\n\r\n")
    _, body = await read_response(reader)
    assert b"task: web.1" in body
    await plane.apply(state([port(published, target)], [endpoint(1), endpoint(2)]))
    seen = Counter([(await get(published))["task"] for _ in range(20)])
    assert seen == {"web.2": 10, "web.3": 10}
    # the connection opened before the removal is still served by its task
    writer.write(b"GET / HTTP/1.1\r\n\r\n")
    _, body = await read_response(reader)
    assert b"task: web.1" in body
    writer.close()


async def test_a_dead_backend_is_skipped_for_the_next(plane, web) -> None:
    apps, target = web
    apps[1].close()  # web.2 is in the table but nothing listens any more
    published = free_port()
    await plane.apply(state([port(published, target)], [endpoint(i) for i in range(3)]))
    seen = Counter([(await get(published))["task"] for _ in range(12)])
    assert set(seen) == {"web.1", "web.3"} and sum(seen.values()) == 12


async def test_connect_timeout_moves_to_the_next_backend(plane, web) -> None:
    _, target = web
    # a backend whose accept queue is full: its SYNs are dropped and connects hang
    stuck = socket.socket()
    stuck.bind(("127.0.0.9", target))
    stuck.listen(0)
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.9", target))
        fillers.append(s)
    try:
        published = free_port()
        eps = [endpoint(0), endpoint(7)]  # 127.0.0.2 and 127.0.0.9
        await plane.apply(state([port(published, target)], eps))
        loop = asyncio.get_running_loop()
        started = loop.time()
        answers = [(await get(published))["task"] for _ in range(4)]
        assert answers == ["web.1"] * 4
        assert loop.time() - started >= 0.5  # one request waited for the connect timeout
    finally:
        for s in [stuck, *fillers]:
            s.close()


async def echo_after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    data = await reader.read()  # until the client's FIN
    writer.write(b"got " + data)
    await writer.drain()
    writer.close()


async def test_half_close_is_relayed_both_ways(plane) -> None:
    target = free_port("127.0.0.2")
    server = await asyncio.start_server(echo_after_eof, "127.0.0.2", target)
    try:
        published = free_port()
        await plane.apply(state([port(published, target)], [endpoint(0)]))
        reader, writer = await asyncio.open_connection("127.0.0.1", published)
        writer.write(b"hello")
        writer.write_eof()  # half-close: we still read
        assert await timeouts.wait_for(reader.read(), 5) == b"got hello"
        writer.close()
    finally:
        server.close()


async def test_a_slow_reader_pauses_the_backend(plane, web) -> None:
    _, target = web
    published = free_port()
    await plane.apply(state([port(published, target)], [endpoint(0)]))
    size = 32 * 1024 * 1024
    reader, writer = await asyncio.open_connection("127.0.0.1", published, limit=1 << 16)
    writer.transport.pause_reading()  # a client that reads nothing for now
    writer.write(f"GET /data?size={size} HTTP/1.1\r\n\r\n".encode())
    listener = plane.listener("tcp", published)
    assert isinstance(listener, TcpListener)

    def backend_paused() -> bool:
        relays = list(listener.relays)
        return bool(relays) and relays[0].backend is not None \
            and relays[0].backend.transport is not None \
            and not relays[0].backend.transport.is_reading()

    await eventually(backend_paused, what="the proxy stops reading the backend")
    relay = next(iter(listener.relays))
    assert relay.client.transport is not None
    assert relay.client.transport.get_write_buffer_size() < 1024 * 1024  # bounded
    writer.transport.resume_reading()
    status, body = await timeouts.wait_for(read_response(reader), 30)
    assert status == "HTTP/1.1 200 OK" and len(body) == size
    writer.close()


async def test_proxy_protocol_tells_the_task_the_real_client(plane) -> None:
    apps, target = await backends(1, proxy_protocol=True)
    try:
        published = free_port()
        await plane.apply(state([port(published, target, proxy=True)], [endpoint(0)]))
        answer = await get(published)
        assert answer["client"] == answer["local"]  # the client as the proxy saw it
        assert answer["proxy"].startswith("127.0.0.")
        assert answer["proxy"] != answer["client"]
        # turning it off on the live port: the task (which insists on a header) refuses
        await plane.apply(state([port(published, target)], [endpoint(0)]))
        assert await refused(published)
    finally:
        apps[0].close()


async def test_a_busy_port_is_an_error_naming_it_and_the_rest_is_applied(plane, web) -> None:
    _, target = web
    busy, fine = free_port(), free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", busy))
    holder.listen()
    try:
        desired = state([port(busy, target), port(fine, target)], [endpoint(0)])
        with pytest.raises(MeshError, match=f"tcp/{busy}"):
            await plane.apply(desired)
        assert plane.ports == [("tcp", fine)]
        assert (await get(fine))["task"] == "web.1"
    finally:
        holder.close()
    await plane.apply(desired)  # the port is free now: the next apply takes it
    assert plane.ports == sorted([("tcp", busy), ("tcp", fine)])
    assert (await get(busy))["task"] == "web.1"


async def test_apply_is_idempotent_and_updates_in_place(plane, web) -> None:
    _, target = web
    a, b = free_port(), free_port()
    desired = state([port(a, target), port(b, target)], [endpoint(0), endpoint(1)])
    await plane.apply(desired)
    before = {key: (plane.listener(*key), plane.listener(*key).server)  # type: ignore[union-attr]
              for key in plane.ports}
    await plane.apply(desired)
    await plane.apply(state([port(a, target), port(b, target)], [endpoint(2)]))
    after = {key: (plane.listener(*key), plane.listener(*key).server)  # type: ignore[union-attr]
             for key in plane.ports}
    assert after == before  # same objects: no listener was closed or re-bound
    assert (await get(a))["task"] == "web.3"
    # a removed port closes its listener; the other one is untouched
    await plane.apply(state([port(b, target)], [endpoint(2)]))
    assert plane.ports == [("tcp", b)] and plane.listener("tcp", b) is before[("tcp", b)][0]
    assert await refused(a)


async def test_target_change_and_close(plane, web) -> None:
    _, target = web
    published = free_port()
    await plane.apply(state([port(published, target)], [endpoint(0)]))
    reader, writer = await asyncio.open_connection("127.0.0.1", published)
    other = free_port("127.0.0.2")
    extra = await backends_on(other)
    try:
        await plane.apply(state([port(published, other)], [endpoint(0)]))
        assert (await get(published))["task"] == "moved"
        await plane.close()
        assert plane.ports == []
        assert await refused(published)
        # close() also ends relayed connections
        writer.write(b"GET / HTTP/1.1\r\n\r\n")
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await timeouts.wait_for(read_response(reader), 2)
    finally:
        writer.close()
        extra.close()


async def backends_on(target: int) -> Whoami:
    from shoal.workloads.whoami import start

    return await start(target, None, "127.0.0.2", env={"SHOAL_TASK_NAME": "moved"})
