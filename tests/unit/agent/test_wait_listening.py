"""`wait_listening`: `running` waits until the task's published TCP ports accept."""

from __future__ import annotations

import asyncio
import socket

from shoal import timeouts
from shoal.agent.controller import wait_listening


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_returns_once_the_port_listens_and_not_before() -> None:
    port = _free_port()
    probe = asyncio.ensure_future(wait_listening("127.0.0.1", [port]))
    await asyncio.sleep(0.1)  # several refused attempts
    assert not probe.done()
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
    try:
        await timeouts.wait_for(probe, 5.0)
    finally:
        server.close()
        await server.wait_closed()
