"""The dashboard of a 5-node in-process swarm (a manager and four workers over loopback),
open in headless Chromium and read live through the DevTools protocol (no reload): it shows
the five nodes, and the new task of a `service scale` within 2 s of the scale."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from shoal.observe.server import serve_observe
from tests.polling import eventually
from tests.unit.cluster.nodes import TestNode, web_spec
from tests.unit.httpapi.test_observe_dashboard import FLAGS, console_errors

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None,
                                reason="no chromium (scripts/setup.sh installs it)")

HOSTNAMES = ("m1", "w1", "w2", "w3", "w4")
_DEVTOOLS = re.compile(r"DevTools listening on (ws://127\.0\.0\.1:(\d+)/\S+)")


@pytest.fixture
async def swarm5(tmp_path: Path) -> AsyncIterator[list[TestNode]]:
    nodes = [TestNode(tmp_path / name, name) for name in HOSTNAMES]
    for node in nodes:
        await node.start()
    try:
        await nodes[0].init()
        for worker in nodes[1:]:
            await worker.join(nodes[0])
        yield nodes
    finally:
        for node in nodes:
            await node.stop()


class Page:
    """One tab of a headless Chromium, evaluated over its DevTools websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._seq = 0

    async def text(self) -> str:
        self._seq += 1
        await self._ws.send_json({"id": self._seq, "method": "Runtime.evaluate", "params": {
            "expression": "document.body.innerText", "returnByValue": True}})
        async with asyncio.timeout(10):
            while True:  # skip the protocol's events, if any
                reply: dict[str, Any] = json.loads((await self._ws.receive()).data)
                if reply.get("id") == self._seq:
                    return str(reply["result"]["result"].get("value", ""))


async def _devtools_port(proc: asyncio.subprocess.Process, seen: list[str]) -> int:
    assert proc.stderr is not None
    async with asyncio.timeout(60):
        while line := (await proc.stderr.readline()).decode(errors="replace"):
            seen.append(line)
            if match := _DEVTOOLS.search(line):
                return int(match.group(2))
    raise AssertionError("chromium printed no DevTools address:\n" + "".join(seen[-20:]))


@pytest.fixture
async def page(swarm5: list[TestNode], tmp_path: Path) -> AsyncIterator[Page]:
    async with serve_observe(swarm5[0].daemon, "127.0.0.1:0") as port:
        proc = await asyncio.create_subprocess_exec(
            "chromium", *FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
            "--remote-debugging-port=0", f"http://127.0.0.1:{port}/",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        stderr: list[str] = []
        try:
            devtools = await _devtools_port(proc, stderr)
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{devtools}/json/list") as resp:
                    [tab] = [t for t in await resp.json() if t["type"] == "page"]
                async with http.ws_connect(tab["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    yield Page(ws)
        finally:
            proc.kill()  # our own child, by its PID
            rest = await proc.stderr.read() if proc.stderr is not None else b""
            await proc.wait()
            errors = console_errors("".join(stderr) + rest.decode(errors="replace"))
            assert errors == [], errors


async def test_the_open_page_shows_five_nodes_and_follows_a_scale_within_2s(
        swarm5: list[TestNode], page: Page) -> None:
    manager = swarm5[0]
    sid = (await manager.call("POST", "/services/create", web_spec(1), expect=201))["ID"]

    async def shows(*words: str) -> bool:
        text = await page.text()
        return all(word in text for word in words)

    await eventually(lambda: shows(*HOSTNAMES, "web.1 @", "1/1"), timeout=30,
                     what="the page with the five nodes and web.1")
    spec = await manager.call("GET", f"/services/{sid}")
    await manager.call("POST", f"/services/{sid}/update", web_spec(2),
                       version=str(spec["Version"]["Index"]))
    # the page long-polls the store's index: the new task shows without a reload
    await eventually(lambda: shows("web.2 @"), timeout=2.0, interval=0.05,
                     what="web.2 on the open page within 2 s of the scale")
