"""The lab load's keep-alive connections over loopback: a draining whoami's graceful close
is a reconnect, a connection broken under a request is a failure (and a reset)."""

from __future__ import annotations

import asyncio
import socket
import struct

from shoal import timeouts
from shoal.lab.keepalive import KeepAliveStats, keepalive_worker
from shoal.workloads.whoami import start


async def _run_worker(
    target: str, stats: KeepAliveStats, stop: asyncio.Event
) -> asyncio.Task[None]:
    return asyncio.ensure_future(keepalive_worker(target, stats, stop, 0.01, 2.0))


async def test_a_draining_server_costs_a_reconnect_not_a_request() -> None:
    loop = asyncio.get_running_loop()
    old = await start(0, None, "127.0.0.1")
    port = old.http_port
    stats, stop = KeepAliveStats(start=loop.time()), asyncio.Event()
    worker = await _run_worker(f"127.0.0.1:{port}", stats, stop)
    await asyncio.sleep(0.2)
    draining = asyncio.ensure_future(old.drain(5.0))
    await asyncio.sleep(0)  # the old one stops listening; its replacement takes the port
    new = await start(port, None, "127.0.0.1")
    await timeouts.wait_for(draining, 2.0)
    await asyncio.sleep(0.2)
    stop.set()
    await worker
    new.close()
    summary = stats.summary()
    assert summary["failed"] == 0, summary["failures"]
    assert summary["reconnects"] == 1 and summary["connections"] == 2
    assert stats.ok > 10


async def test_a_connection_reset_under_a_request_is_a_failure_and_a_reset() -> None:
    loop = asyncio.get_running_loop()

    async def reset_at_first_request(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readuntil(b"\r\n\r\n")
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    server = await asyncio.start_server(reset_at_first_request, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stats, stop = KeepAliveStats(start=loop.time()), asyncio.Event()
    worker = await _run_worker(f"127.0.0.1:{port}", stats, stop)
    await asyncio.sleep(0.1)
    stop.set()
    await worker
    server.close()
    assert stats.ok == 0 and stats.failed > 0 and stats.resets == stats.failed
    assert stats.reconnects == 0
