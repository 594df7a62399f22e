"""An in-process node (fake runtime, recording data plane) in a swarm, driven over HTTP.

api             an `Api` on a node that has run `swarm init` (aiohttp test client)
Api.call(...)   one request; asserts the status, returns the decoded JSON body
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from shoal.httpapi.app import make_app
from shoal.node.node import Node
from tests.unit.fakes import FakeRuntime
from tests.unit.inprocess import build_daemon

V = "/v1.47"


class Api:
    def __init__(self, daemon: Node, client: TestClient, runtime: FakeRuntime) -> None:
        self.daemon, self.client, self.runtime = daemon, client, runtime

    async def call(
        self, method: str, path: str, body: Any = None, expect: int = 200, **params: str
    ) -> Any:
        resp = await self.client.request(method, V + path, json=body, params=params)
        text = await resp.text()
        assert resp.status == expect, f"{method} {path}: {resp.status} {text}"
        if resp.status >= 400:
            assert resp.headers["Content-Type"] == "application/json"
        return json.loads(text) if text else None

    async def get(self, path: str, **params: Any) -> Any:
        """GET with `filters` given as a dict (docker-py's list form or the CLI's map form)."""
        if "filters" in params and not isinstance(params["filters"], str):
            params["filters"] = json.dumps(params["filters"])
        return await self.call("GET", path, **params)


def filters(**kv: str) -> str:
    """The docker CLI's filter encoding: {"key": {"value": true}}."""
    return json.dumps({k.replace("_", "-"): {v: True} for k, v in kv.items()})


def make_daemon(root: Path) -> tuple[Node, FakeRuntime]:
    parts = build_daemon(root)
    return parts.daemon, parts.runtime


# ListenAddr: the 2377 services on loopback, any free port (tests run side by side)
INIT = {
    "ListenAddr": "127.0.0.1:0",
    "AdvertiseAddr": "198.18.0.11",
    "DefaultAddrPool": ["198.19.0.0/16"],
    "SubnetSize": 24,
}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    daemon, runtime = make_daemon(tmp_path)
    client = TestClient(TestServer(make_app(daemon)))
    await client.start_server()
    a = Api(daemon, client, runtime)
    await a.call("POST", "/swarm/init", INIT)
    try:
        yield a
    finally:
        await client.close()
        await daemon.shutdown()
