"""shoal's OpenAPI document: it describes exactly the routes shoal serves, it is served, and
schemathesis fuzzing every operation in it against an in-process node finds no server error
and no crash.

The node runs in a thread with its own event loop, serving HTTP on a loopback port (the
unit tests' guard allows loopback only); schemathesis' requests are synchronous.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings

from shoal.httpapi.app import add_all_routes, make_app
from shoal.httpapi.openapi import document
from shoal.node.node import Node
from tests.unit.httpapi.conftest import INIT, Api, make_daemon

DOC: dict[str, Any] = json.loads(document())
VERSIONED = re.compile(r"/v(\{|\d+\.\d+/)")  # /v{api_version}/x, /v1.47/x


def test_the_document_describes_exactly_what_shoal_serves() -> None:
    router = web.UrlDispatcher()
    add_all_routes(router)
    served = {
        (route.method.lower(), re.sub(r"\{[^}]*\}", "{}", resource.canonical))
        for resource in router.resources()
        if not VERSIONED.match(resource.canonical)
        for route in resource
    }
    documented = {
        (method, re.sub(r"\{[^}]*\}", "{}", path))
        for path, item in DOC["paths"].items()
        for method in item
    }
    assert served == documented
    assert DOC["swagger"] == "2.0" and DOC["basePath"] == "/v1.47"
    assert "/containers/{id}/exec" in DOC["paths"] and "/exec/{id}/start" in DOC["paths"]


async def test_the_document_is_served(api: Api) -> None:
    for path in ("/shoal/openapi.json", "/v1.47/shoal/openapi.json"):
        resp = await api.client.get(path)
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
        assert await resp.json() == DOC


# -- fuzzing ----------------------------------------------------------------------------


def _fuzz_document() -> dict[str, Any]:
    doc = copy.deepcopy(DOC)
    # A fuzzed replica count in the billions would have the node start that many tasks:
    # that is a load test, not an API test.
    replicated = doc["definitions"]["ServiceSpec"]["properties"]["Mode"]["properties"]
    replicated["Replicated"]["properties"]["Replicas"]["maximum"] = 4
    for job in ("ReplicatedJob", "GlobalJob"):  # shoal refuses job modes
        del replicated[job]
    doc["definitions"]["ServiceSpec"]["properties"]["Mode"]["maxProperties"] = 1
    # Valid names and data, so that fuzzing gets past the first checks (the unit tests
    # cover bad names and data).
    name = {"type": "string", "pattern": r"^[a-z][a-z0-9]{0,8}$"}
    defs = doc["definitions"]
    for spec in ("ServiceSpec", "SecretSpec", "ConfigSpec"):
        defs[spec]["properties"]["Name"] = name
        defs[spec]["required"] = ["Name"]
    for spec in ("SecretSpec", "ConfigSpec"):
        defs[spec]["properties"]["Data"] = {"type": "string", "pattern": r"^([A-Za-z0-9]{4})+$"}
    create = doc["paths"]["/networks/create"]["post"]["parameters"][0]["schema"]
    create["properties"]["Name"] = name
    create["properties"]["Driver"] = {"enum": ["overlay", "bridge", ""]}
    # and without what shoal refuses by design (plugins, config-only networks, secret drivers)
    for props, key in (
        (defs["TaskSpec"]["properties"], "PluginSpec"),
        (defs["TaskSpec"]["properties"], "NetworkAttachmentSpec"),
        (create["properties"], "ConfigOnly"),
        (create["properties"], "ConfigFrom"),
        (defs["SecretSpec"]["properties"], "Driver"),
        (create["properties"], "EnableIPv6"),
    ):
        del props[key]
    task = defs["TaskSpec"]
    task["required"] = ["ContainerSpec"]
    container = task["properties"]["ContainerSpec"]
    container["required"] = ["Image"]
    container["properties"]["Image"] = name
    return doc


SCHEMA = (
    schemathesis.openapi.from_dict(_fuzz_document())
    # leaving the swarm would turn every later answer into a 503; init and join answer
    # Docker's 503 "already part of a swarm" by design
    .exclude(path_regex=r"^/swarm/(init|join|leave)$")
    # a fuzzed image name or login address must never make this root-namespace node contact
    # a registry; /images/load takes a tar body the fuzzer cannot make (tests/unit/images and
    # the registry integration tests cover them)
    .exclude(path_regex=r"^/(auth|images/create|images/load|distribution/.*)$")
)


class ThreadedNode:
    """A node serving its API on 127.0.0.1:<port> from an event loop in a thread."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.daemon: Node | None = None
        self.runner: web.AppRunner | None = None
        self.url = ""

    def run(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout=30)

    async def _start(self) -> None:
        self.daemon, _ = make_daemon(self.root)
        self.runner = web.AppRunner(make_app(self.daemon), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        assert self.runner is not None and self.daemon is not None
        await self.runner.cleanup()
        await self.daemon.shutdown()
        # what shutdown leaves waiting (store watches) must not outlive the loop
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def start(self) -> None:
        self.thread.start()
        self.run(self._start())
        resp = requests.post(f"{self.url}/v1.47/swarm/init", json=INIT, timeout=10)
        assert resp.status_code == 200, resp.text

    def stop(self) -> None:
        self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedNode]:
    errors = _Errors()
    logging.getLogger("shoal").addHandler(errors)
    n = ThreadedNode(tmp_path_factory.mktemp("fuzz"))
    n.start()
    try:
        yield n
        # no crash: the node still answers, its components still run, nothing logged an error
        assert requests.get(f"{n.url}/_ping", timeout=5).text == "OK"
        info = requests.get(f"{n.url}/v1.47/info", timeout=5).json()
        assert info["Swarm"]["LocalNodeState"] == "active"
        assert n.daemon is not None
        assert all(not t.done() for t in n.daemon.background_tasks()), n.daemon.background_tasks()
        assert not errors.records, [r.getMessage() for r in errors.records]
    finally:
        n.stop()
        logging.getLogger("shoal").removeHandler(errors)


@SCHEMA.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_fuzzed_requests_get_no_server_error(case: Any, node: ThreadedNode) -> None:
    if case.formatted_path.endswith("/logs") and case.query:
        # a followed log stream never ends by design; the fuzzer must not wait on it
        case.query.pop("follow", None)
    if case.formatted_path.endswith("/events"):
        # an event stream without `until` never ends by design: bound it at "now"
        case.query = {**(case.query or {}), "until": str(int(time.time()))}
    response = case.call(base_url=f"{node.url}/v1.47", timeout=10)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    )
    if response.status_code >= 400:
        # schemathesis' response: lowercase header names, lists of values
        assert response.headers.get("content-type") == ["application/json"], (
            f"{case.method} {case.formatted_path} {case.query} {case.headers}: "
            f"{response.status_code} {response.headers} {response.text}"
        )
        assert isinstance(response.json().get("message"), str)
