"""/metrics of an in-process manager, parsed with prometheus-client's text parser: values
that move (tasks running after a scale, Raft leadership and proposal latency, API latency
counts, the data plane's traffic counters), and the dashboard JSON following a scale."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families

from shoal.api.latency import LatencyRecord
from shoal.mesh.recording import RecordingDataPlane
from shoal.mesh.traffic import PortTraffic
from shoal.observe.metrics import TRAFFIC_TTL, NodeMetrics
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


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def scrape(base: str) -> Samples:
    async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
        return parse(await resp.text())


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
    proposals = "shoal_raft_proposal_duration_seconds_count", ()
    assert after[proposals] > before[proposals] >= 1  # swarm init and create went through Raft
    assert after[("shoal_raft_proposal_duration_seconds_sum", ())] > 0
    assert after[("shoal_dispatcher_sessions", ())] == 0  # its own agent needs no stream
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


PORT = (("protocol", "tcp"), ("published_port", "8080"))


async def test_mesh_traffic_is_read_from_the_data_plane_at_most_once_a_second(api: Api) -> None:
    assert api.daemon.network is not None
    plane = api.daemon.network.plane
    assert isinstance(plane, RecordingDataPlane)
    now = [100.0]
    metrics = NodeMetrics(api.daemon, clock=lambda: now[0])
    plane.counters = {("tcp", 8080): PortTraffic(connections=3, bytes=1200)}
    await metrics.refresh()
    first = parse(metrics.exposition().decode())
    assert first[("shoal_mesh_connections_total", PORT)] == 3
    assert first[("shoal_mesh_bytes_total", PORT)] == 1200
    plane.counters = {("tcp", 8080): PortTraffic(connections=5, bytes=4000)}
    now[0] += TRAFFIC_TTL / 2
    await metrics.refresh()  # within the TTL: the last reading serves
    assert plane.traffic_reads == 1
    assert parse(metrics.exposition().decode())[("shoal_mesh_bytes_total", PORT)] == 1200
    now[0] += TRAFFIC_TTL
    await metrics.refresh()
    later = parse(metrics.exposition().decode())
    assert plane.traffic_reads == 2
    assert later[("shoal_mesh_connections_total", PORT)] == 5
    assert later[("shoal_mesh_bytes_total", PORT)] == 4000


@given(st.lists(st.floats(min_value=0, max_value=20, allow_nan=False), max_size=40))
def test_a_latency_record_exports_what_prometheus_histogram_would(values: list[float]) -> None:
    record = LatencyRecord()
    registry = CollectorRegistry()
    reference = Histogram("ref_seconds", "reference", registry=registry)
    for value in values:
        record.observe(value)
        reference.observe(value)
    want = {s.labels["le"]: s.value for s in next(iter(registry.collect())).samples
            if s.name == "ref_seconds_bucket"}
    assert dict(record.cumulative()) == want
    assert record.count == len(values)
    assert record.sum == pytest.approx(sum(values))
