"""/metrics of an in-process manager, parsed with prometheus-client's text parser: values
that move (tasks running after a scale, Raft leadership, API latency counts), and the
dashboard JSON following a scale."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shoal.observe.server import serve_observe
from tests.polling import eventually
from tests.unit.httpapi.conftest import Api

SPEC = {"Name": "web", "TaskTemplate": {"ContainerSpec": {
    "Image": "busybox", "Labels": {"shoal.runtime": "exec"}}},
    "Mode": {"Replicated": {"Replicas": 1}},
    "EndpointSpec": {"Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080}]}}


@pytest.fixture
async def observe(api: Api) -> AsyncIterator[str]:
    async with serve_observe(api.daemon, "127.0.0.1:0") as port:
        yield f"http://127.0.0.1:{port}"


async def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def scale(api: Api, service_id: str, replicas: int) -> None:
    svc = await api.call("GET", f"/services/{service_id}")
    spec = {**SPEC, "Mode": {"Replicated": {"Replicas": replicas}}}
    await api.call("POST", f"/services/{service_id}/update", spec,
                   version=str(svc["Version"]["Index"]))


async def test_metrics_move_with_the_cluster(api: Api, observe: str) -> None:
    before = await scrape(observe)
    assert before[("shoal_manager", ())] == 1
    assert before[("shoal_raft_leader", ())] == 1 and before[("shoal_raft_term", ())] >= 1
    assert before[("shoal_raft_applied_index", ())] >= 1
    assert before[("shoal_tasks", (("state", "running"),))] == 0
    svc = await api.call("POST", "/services/create", SPEC, expect=201)
    await scale(api, svc["ID"], 3)

    async def three_running() -> Any:
        m = await scrape(observe)
        return m if m[("shoal_tasks", (("state", "running"),))] == 3 else None

    after = await eventually(three_running, timeout=20)
    assert after[("shoal_services", ())] == 1
    assert after[("shoal_service_desired_replicas", (("service", "web"),))] == 3
    assert after[("shoal_service_running_replicas", (("service", "web"),))] == 3
    assert after[("shoal_raft_commit_index", ())] > before[("shoal_raft_commit_index", ())]
    assert after[("shoal_nodes", ())] == 1
    route = (("method", "POST"), ("route", r"/v{api_version}/services/create"))
    assert after[("shoal_api_request_duration_seconds_count", route)] == 1
    assert await eventually(partial(_ready_backends, observe), timeout=20) == 3


async def _ready_backends(base: str) -> float | None:
    m = await scrape(base)
    value = m.get(("shoal_mesh_backends_ready", (("protocol", "tcp"),
                                                 ("published_port", "8080"))))
    return value if value == 3 else None


async def test_dashboard_json_follows_a_scale(api: Api, observe: str) -> None:
    svc = await api.call("POST", "/services/create", SPEC, expect=201)

    async def state(n: int) -> Any:
        async with aiohttp.ClientSession() as http, http.get(observe + "/dashboard.json") as r:
            data = await r.json()
        [web] = data["services"]
        return data if web["running"] == n else None

    one = await eventually(partial(state, 1), timeout=20)
    assert [n["hostname"] for n in one["nodes"]] == ["h1"] and one["nodes"][0]["leader"]
    assert one["services"][0]["ports"] == [
        {"protocol": "tcp", "published": 8080, "target": 80, "mode": "ingress"}]
    await scale(api, svc["ID"], 2)
    two = await eventually(partial(state, 2), timeout=20)
    assert sorted(t["slot"] for t in two["tasks"] if t["desired"] == "running") == [1, 2]
    async with aiohttp.ClientSession() as http, http.get(observe + "/") as resp:
        assert resp.status == 200 and "<svg" in await resp.text()
