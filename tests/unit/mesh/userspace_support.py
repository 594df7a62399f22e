"""Helpers of the userspace mesh tests: loopback whoami backends, states, requests.

Everything here stays on 127.0.0.0/8: backends listen on 127.0.0.2, .3, ... (one address
each, one shared target port), the data plane on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from shoal import timeouts
from shoal.mesh.model import Endpoint, MeshState, PortSpec
from shoal.workloads.whoami import Whoami, start

NODE = "n1"


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both TCP and UDP on `host` (another process could still take it)."""
    while True:
        with socket.socket() as tcp:
            tcp.bind((host, 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
                return port


async def backends(count: int = 3, proxy_protocol: bool = False) -> tuple[list[Whoami], int]:
    """`count` whoami servers on 127.0.0.2.. sharing one target port (TCP and UDP)."""
    target = free_port("127.0.0.2")
    apps = [
        await start(target, target, f"127.0.0.{i + 2}", env={"SHOAL_TASK_NAME": f"web.{i + 1}"},
                    proxy_protocol=proxy_protocol)
        for i in range(count)
    ]
    return apps, target


def endpoint(i: int, ready: bool = True, node: str = NODE, service: str = "web") -> Endpoint:
    return Endpoint(service, f"t{i}", node, f"127.0.0.{i + 2}", ready)


def state(ports: list[PortSpec], endpoints: list[Endpoint]) -> MeshState:
    return MeshState(NODE, "198.19.1.0/24", tuple(ports), tuple(endpoints))


def port(published: int, target: int, protocol: str = "tcp", mode: str = "ingress",
         proxy: bool = False, service: str = "web") -> PortSpec:
    return PortSpec(service, protocol, published, target, mode, proxy)  # type: ignore[arg-type]


def parse(text: str) -> dict[str, str]:
    pairs = (line.partition(":") for line in text.splitlines())
    return {key: value.strip() for key, _, value in pairs}


async def read_response(reader: asyncio.StreamReader) -> tuple[str, bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    status, *lines = head.strip().split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines)}
    return status, await reader.readexactly(int(headers["content-length"]))


async def get(published: int, path: str = "/", timeout: float = 5.0) -> dict[str, str]:
    """One GET on a new connection through the mesh; whoami's answer as a dict."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", published)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n".encode())
            status, body = await read_response(reader)
            assert status == "HTTP/1.1 200 OK", status
            info = parse(body.decode())
            info["local"] = "{}:{}".format(*writer.get_extra_info("sockname"))
            return info
        finally:
            writer.close()


class UdpClient(asyncio.DatagramProtocol):
    """A UDP client socket; `ask` sends one datagram and waits for one answer."""

    def __init__(self) -> None:
        self.answers: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.answers.put_nowait((data, addr))

    @classmethod
    async def open(cls) -> UdpClient:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(cls, local_addr=("127.0.0.1", 0))
        return proto

    async def ask(self, published: int, payload: bytes = b"hi", timeout: float = 2.0
                  ) -> tuple[dict[str, str], Any]:
        assert self.transport is not None
        self.transport.sendto(payload, ("127.0.0.1", published))
        data, addr = await timeouts.wait_for(self.answers.get(), timeout)
        return parse(data.decode()), addr

    @property
    def address(self) -> str:
        assert self.transport is not None
        return "{}:{}".format(*self.transport.get_extra_info("sockname"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
