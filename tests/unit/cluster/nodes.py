"""In-process nodes (fake runtime, recording plane) that form a swarm over loopback 2377."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from shoal import timeouts
from shoal.httpapi.app import make_app
from tests.polling import eventually
from tests.unit.inprocess import build_daemon

V = "/v1.47"


class TestNode:
    __test__ = False

    def __init__(self, root: Path, hostname: str) -> None:
        parts = build_daemon(root, hostname, reconcile_every=0.5)
        self.daemon, self.runtime, self.plane = parts.daemon, parts.runtime, parts.plane
        self.overlays = parts.overlays
        self.client = TestClient(TestServer(make_app(self.daemon)))

    async def start(self) -> None:
        await self.client.start_server()
        await self.daemon.start()

    async def stop(self) -> None:
        await self.client.close()
        try:
            await timeouts.wait_for(self.daemon.shutdown(), 30.0)
        except TimeoutError:
            # a hang becomes a failure that says where every task was waiting
            for task in asyncio.all_tasks():
                try:
                    task.print_stack(limit=8, file=sys.stderr)
                except TypeError:  # 3.11 fails on a frame with no line number: the repr then
                    print(repr(task), file=sys.stderr)
            raise

    async def call(
        self, method: str, path: str, body: Any = None, expect: int = 200, **params: str
    ) -> Any:
        resp = await self.client.request(method, V + path, json=body, params=params)
        text = await resp.text()
        assert resp.status == expect, f"{method} {path}: {resp.status} {text}"
        return json.loads(text) if text else None

    async def init(self) -> None:
        await self.call(
            "POST",
            "/swarm/init",
            {"AdvertiseAddr": "127.0.0.1", "DefaultAddrPool": ["198.19.0.0/16"],
             "SubnetSize": 24},
        )

    @property
    def addr(self) -> str:
        assert self.daemon.cluster is not None
        return f"127.0.0.1:{self.daemon.cluster.server.port}"

    async def tokens(self) -> dict[str, str]:
        return (await self.call("GET", "/swarm"))["JoinTokens"]  # type: ignore[no-any-return]

    async def join(self, manager: TestNode, token: str | None = None, expect: int = 200) -> Any:
        token = token if token is not None else (await manager.tokens())["Worker"]
        return await self.call(
            "POST", "/swarm/join", {"RemoteAddrs": [manager.addr], "JoinToken": token},
            expect=expect,
        )

    async def tasks(self, service: str) -> list[dict[str, Any]]:
        filters = json.dumps({"service": {service: True}})
        return await self.call("GET", "/tasks", filters=filters)  # type: ignore[no-any-return]

    async def nodes(self) -> dict[str, dict[str, Any]]:
        return {n["Description"]["Hostname"]: n for n in await self.call("GET", "/nodes")}


def web_spec(replicas: int) -> dict[str, Any]:
    return {
        "Name": "web",
        "TaskTemplate": {
            "ContainerSpec": {"Image": "shoal", "Args": ["whoami", "--port", "80"]},
            "RestartPolicy": {"Condition": "any", "Delay": 50_000_000},
        },
        "Mode": {"Replicated": {"Replicas": replicas}},
        "EndpointSpec": {"Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080}]},
    }


@asynccontextmanager
async def manager_and_workers(
    root: Path, names: tuple[str, ...] = ("m1", "w1", "w2")
) -> AsyncIterator[list[TestNode]]:
    """A swarm of `names` (the first inits, the others join as workers), every node ready;
    stopped in reverse order at the end."""
    nodes = [TestNode(root / name, name) for name in names]
    for node in nodes:
        await node.start()
    try:
        await nodes[0].init()
        for worker in nodes[1:]:
            await worker.join(nodes[0])

        async def ready() -> bool:
            found = await nodes[0].nodes()
            return len(found) == len(nodes) and all(
                n["Status"]["State"] == "ready" for n in found.values()
            )

        await eventually(ready)
        yield nodes
    finally:
        for node in reversed(nodes):
            await node.stop()
