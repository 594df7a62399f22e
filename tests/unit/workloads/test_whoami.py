"""whoami over loopback: HTTP keep-alive and pipelining, /health, /data, UDP, SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from shoal import timeouts
from shoal.workloads.cli import whoami as whoami_command
from shoal.workloads.whoami import Whoami, identity, start

ENV = {
    "SHOAL_TASK_NAME": "web.2",
    "SHOAL_TASK_ID": "t123",
    "SHOAL_TASK_SLOT": "2",
    "SHOAL_SERVICE_NAME": "web",
    "SHOAL_NODE_HOSTNAME": "h1",
    "SHOAL_NODE_ID": "n1",
}


def parse(text: str) -> dict[str, str]:
    pairs = (line.partition(":") for line in text.splitlines())
    return {key: value.strip() for key, _, value in pairs}


@pytest.fixture
async def app():
    server = await start(0, 0, "127.0.0.1", env=ENV)
    yield server
    server.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    status, *lines = head.strip().split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines)}
    body = await reader.readexactly(int(headers["content-length"]))
    return status, headers, body


async def test_keep_alive_and_pipelining(app: Whoami) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", app.http_port)
    local = writer.get_extra_info("sockname")
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, body = await read_response(reader)
    assert status == "HTTP/1.1 200 OK"
    info = parse(body.decode())
    assert info["task"] == "web.2" and info["task_id"] == "t123" and info["slot"] == "2"
    assert info["service"] == "web" and info["node"] == "h1" and info["node_id"] == "n1"
    assert info["hostname"] == socket.gethostname()
    assert info["client"] == f"{local[0]}:{local[1]}"
    # two pipelined requests on the same connection, one with a body
    writer.write(
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /data?size=1024 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
    )
    assert (await read_response(reader))[2] == b"ok"
    status, _, body = await read_response(reader)
    assert status == "HTTP/1.1 200 OK" and len(body) == 1024
    writer.close()


async def test_http10_and_connection_close_end_the_connection(app: Whoami) -> None:
    for request in (b"GET / HTTP/1.0\r\n\r\n", b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"):
        reader, writer = await asyncio.open_connection("127.0.0.1", app.http_port)
        writer.write(request)
        _, headers, _ = await read_response(reader)
        assert headers["connection"] == "close"
        assert await timeouts.wait_for(reader.read(), 5) == b""
        writer.close()


async def test_bad_data_size_is_400(app: Whoami) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", app.http_port)
    writer.write(b"GET /data?size=-1 HTTP/1.1\r\n\r\n")
    assert (await read_response(reader))[0] == "HTTP/1.1 400 Bad Request"
    writer.close()


async def test_udp_answers_with_sender_as_client(app: Whoami) -> None:
    assert app.udp_port is not None
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect(("127.0.0.1", app.udp_port))
        await loop.sock_sendall(sock, b"who?")
        data = await timeouts.wait_for(loop.sock_recv(sock, 4096), 5)
        local = sock.getsockname()
    info = parse(data.decode())
    assert info["task"] == "web.2" and info["client"] == f"127.0.0.1:{local[1]}"


def test_identity_falls_back_to_hostname() -> None:
    assert parse(identity({}))["task"] == socket.gethostname()


def test_sigterm_exits_zero_promptly() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal.workloads.whoami", "--port", "0", "--udp-port", "0",
         "--host", "127.0.0.1"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        assert "listening" in proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_click_command_has_the_documented_options() -> None:
    result = CliRunner().invoke(whoami_command, ["--help"])
    assert result.exit_code == 0
    assert "--port" in result.output and "--udp-port" in result.output
    assert "--drain-timeout" in result.output


async def test_drain_closes_each_connection_after_its_next_answer(app: Whoami) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", app.http_port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    _, headers, _ = await read_response(reader)
    assert "connection" not in headers  # kept alive
    draining = asyncio.ensure_future(app.drain(5.0))
    await asyncio.sleep(0.1)
    assert not draining.done()  # the idle keep-alive connection is not cut
    with pytest.raises(OSError):  # no new connections
        await asyncio.open_connection("127.0.0.1", app.http_port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, _ = await read_response(reader)
    assert status == "HTTP/1.1 200 OK" and headers["connection"] == "close"
    assert await reader.read() == b""
    await timeouts.wait_for(draining, 1.0)  # done once its last connection closed
    writer.close()


async def test_drain_closes_idle_connections_after_its_timeout(app: Whoami) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", app.http_port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await read_response(reader)
    await timeouts.wait_for(app.drain(0.2), 2.0)
    assert await timeouts.wait_for(reader.read(), 1.0) == b""
    writer.close()
