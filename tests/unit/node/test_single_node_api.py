"""A whole node in one process — API, store, reconcilers, agent, mesh sync — with a fake
runtime and a recording data plane: the behaviour of issue 2 without root or kernels."""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from shoal.api.timefmt import to_epoch
from shoal.httpapi.app import make_app
from shoal.mesh.recording import RecordingDataPlane as RecordingPlane
from shoal.node.node import Node as ShoalNode
from tests.polling import eventually
from tests.unit.fakes import FakeRuntime
from tests.unit.inprocess import build_daemon

V = "/v1.47"


class Node:
    def __init__(
        self, daemon: ShoalNode, client: TestClient, runtime: FakeRuntime, plane: RecordingPlane
    ) -> None:
        self.daemon, self.client, self.runtime, self.plane = daemon, client, runtime, plane

    async def call(
        self, method: str, path: str, body: Any = None, expect: int = 200, **params: str
    ) -> Any:
        resp = await self.client.request(method, V + path, json=body, params=params)
        text = await resp.text()
        assert resp.status == expect, f"{method} {path}: {resp.status} {text}"
        if resp.status >= 400:
            assert resp.headers["Content-Type"] == "application/json"
        return json.loads(text) if text else None

    async def tasks(self, service: str) -> list[dict[str, Any]]:
        filters = json.dumps({"service": {service: True}})
        return await self.call("GET", "/tasks", filters=filters)  # type: ignore[no-any-return]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    parts = build_daemon(tmp_path)
    daemon, runtime, plane = parts.daemon, parts.runtime, parts.plane
    client = TestClient(TestServer(make_app(daemon)))
    await client.start_server()
    n = Node(daemon, client, runtime, plane)
    n.health = parts.health
    await n.call(
        "POST",
        "/swarm/init",
        {"AdvertiseAddr": "198.18.0.11", "DefaultAddrPool": ["198.19.0.0/16"], "SubnetSize": 24},
    )
    try:
        yield n
    finally:
        await client.close()
        await daemon.shutdown()


def web_spec(replicas: int = 3, ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "Name": "web",
        "TaskTemplate": {
            "ContainerSpec": {"Image": "shoal", "Args": ["whoami", "--port", "80"]},
            "RestartPolicy": {"Condition": "any", "Delay": 50_000_000},
        },
        "Mode": {"Replicated": {"Replicas": replicas}},
        "EndpointSpec": {
            "Ports": ports
            if ports is not None
            else [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080}]
        },
    }


async def running(node: Node, service: str, count: int) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        tasks = [
            t
            for t in await node.tasks(service)
            if t["Status"]["State"] == "running" and t["DesiredState"] == "running"
        ]
        return tasks if len(tasks) == count else None

    return await eventually(check)  # type: ignore[no-any-return]


def mesh_ports(plane: RecordingPlane) -> set[tuple[str, int, int]]:
    return plane.published()


def ready_tasks(plane: RecordingPlane) -> set[str]:
    last = plane.last
    return {e.task_id for e in last.endpoints if e.ready} if last else set()


async def test_ping_info_and_version_negotiation(node: Node) -> None:
    resp = await node.client.head("/_ping")
    assert resp.status == 200 and resp.headers["Api-Version"] == "1.47"
    assert resp.headers["Swarm"] == "active/manager"
    info = await node.call("GET", "/info")
    assert info["Swarm"]["LocalNodeState"] == "active" and info["Swarm"]["ControlAvailable"]
    resp = await node.client.get("/v1.99/info")
    assert resp.status == 400 and "too new" in (await resp.json())["message"]
    resp = await node.client.get("/v1.12/info")
    assert resp.status == 400 and "too old" in (await resp.json())["message"]
    resp = await node.client.get("/v1.47/plugins")
    assert resp.status == 404 and resp.headers["Content-Type"] == "application/json"
    assert "shoal does not support" in (await resp.json())["message"]


async def test_service_lifecycle_through_the_api(node: Node) -> None:
    created = await node.call("POST", "/services/create", web_spec(), expect=201)
    sid = created["ID"]
    tasks = await running(node, sid, 3)
    ids = {t["ID"] for t in tasks}
    assert {t["Slot"] for t in tasks} == {1, 2, 3}
    env = node.runtime.configs[tasks[0]["ID"]].env
    assert env["SHOAL_SERVICE_NAME"] == "web" and env["SHOAL_NODE_HOSTNAME"] == "h1"
    assert node.runtime.configs[tasks[0]["ID"]].argv[1:] == [
        "-m",
        "shoal",
        "whoami",
        "--port",
        "80",
    ]
    await eventually(lambda: ready_tasks(node.plane) == ids)
    assert mesh_ports(node.plane) == {("tcp", 8080, 80)}

    listed = await node.call("GET", "/services", status="true")
    assert listed[0]["ServiceStatus"] == {"RunningTasks": 3, "DesiredTasks": 3, "CompletedTasks": 0}

    # the seed command: publish-add on the live service, tasks untouched
    svc = await node.call("GET", f"/services/{sid}")
    spec = svc["Spec"]
    spec["EndpointSpec"]["Ports"].append(
        {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 9090, "PublishMode": "ingress"}
    )
    await node.call("POST", f"/services/{sid}/update", spec, version=str(svc["Version"]["Index"]))
    await eventually(lambda: ("tcp", 9090, 80) in mesh_ports(node.plane))
    assert {t["ID"] for t in await running(node, sid, 3)} == ids

    # stale version: Docker's message, nothing changed
    resp = await node.client.post(
        f"{V}/services/{sid}/update", json=spec, params={"version": str(svc["Version"]["Index"])}
    )
    assert resp.status == 409 and "update out of sequence" in (await resp.json())["message"]

    # a task that dies is replaced, and leaves the mesh
    victim = tasks[0]["ID"]
    node.runtime.exit(victim, 1)
    await eventually(lambda: victim not in ready_tasks(node.plane))
    replaced = await running(node, sid, 3)
    assert victim not in {t["ID"] for t in replaced}
    dead = next(t for t in await node.tasks(sid) if t["ID"] == victim)
    assert dead["Status"]["State"] == "failed" and "non-zero exit (1)" in dead["Status"]["Err"]

    # scale both ways
    svc = await node.call("GET", f"/services/{sid}")
    svc["Spec"]["Mode"]["Replicated"]["Replicas"] = 10
    await node.call(
        "POST", f"/services/{sid}/update", svc["Spec"], version=str(svc["Version"]["Index"])
    )
    await running(node, sid, 10)
    await eventually(lambda: len(ready_tasks(node.plane)) == 10)
    svc = await node.call("GET", f"/services/{sid}")
    svc["Spec"]["Mode"]["Replicated"]["Replicas"] = 1
    await node.call(
        "POST", f"/services/{sid}/update", svc["Spec"], version=str(svc["Version"]["Index"])
    )
    await running(node, sid, 1)
    await eventually(lambda: len(ready_tasks(node.plane)) == 1 and len(node.runtime.alive()) == 1)

    # logs, in docker's multiplexed frames with the task details
    resp = await node.client.get(
        f"{V}/services/{sid}/logs", params={"stdout": "1", "stderr": "1", "details": "1"}
    )
    raw = await resp.read()
    stream, length = struct.unpack(">BxxxL", raw[:8])
    assert stream == 1 and b"com.docker.swarm.task.id=" in raw[8 : 8 + length]
    assert b"hello from web." in raw

    # remove: no task left running, no port, tasks reaped
    await node.call("DELETE", f"/services/{sid}")
    await eventually(lambda: not node.plane.published() and not node.runtime.alive())
    await eventually(node_tasks_gone(node, sid))


def node_tasks_gone(node: Node, sid: str) -> Callable[[], Any]:
    async def check() -> bool:
        return not await node.tasks(sid)

    return check


async def test_bad_input_is_refused_and_changes_nothing(node: Node) -> None:
    await node.call("POST", "/services/create", web_spec(replicas=1), expect=201)
    other = web_spec(replicas=1)
    other["Name"] = "api"
    err = await node.call("POST", "/services/create", other, expect=400)
    assert "port '8080' is already in use by service 'web'" in err["message"]
    err = await node.call("POST", "/services/create", web_spec(replicas=1), expect=409)
    assert "already exists" in err["message"]
    err = await node.call("POST", "/services/create", {"Name": "x", "Bogus": 1}, expect=400)
    assert "unknown field" in err["message"]
    err = await node.call("GET", "/services/nosuch", expect=404)
    assert err["message"] == "service nosuch not found"
    other["EndpointSpec"]["Ports"] = [{"TargetPort": 80, "PublishedPort": 8081}]
    await node.call("POST", "/services/create", other, expect=201)
    services = await node.call("GET", "/services")
    assert sorted(s["Spec"]["Name"] for s in services) == ["api", "web"]
    # an ambiguous ID prefix
    prefix = ""
    a, b = (s["ID"] for s in services)
    while a[: len(prefix) + 1] == b[: len(prefix) + 1]:
        prefix = a[: len(prefix) + 1]
    if prefix:
        err = await node.call("GET", f"/services/{prefix}", expect=400)
        assert "ambiguous" in err["message"]
    err = await node.call("GET", "/nodes/nosuch", expect=404)
    assert err["message"] == "node nosuch not found"


async def test_missing_program_fails_the_task_not_the_daemon(node: Node) -> None:
    node.runtime.missing_programs.add("nosuchcmd")
    spec = web_spec(replicas=1, ports=[])
    spec["TaskTemplate"]["ContainerSpec"] = {"Image": "nosuchcmd"}
    spec["TaskTemplate"]["RestartPolicy"] = {"Condition": "none"}
    sid = (await node.call("POST", "/services/create", spec, expect=201))["ID"]

    async def rejected() -> dict[str, Any] | None:
        tasks = await node.tasks(sid)
        return tasks[0] if tasks and tasks[0]["Status"]["State"] == "rejected" else None

    task = await eventually(rejected)
    assert "executable file not found" in task["Status"]["Err"]
    assert (await node.call("GET", "/info"))["Swarm"]["LocalNodeState"] == "active"


async def test_leave_needs_force_and_cleans_up(node: Node) -> None:
    await node.call("POST", "/services/create", web_spec(replicas=2), expect=201)
    err = await node.call("POST", "/swarm/leave", expect=503)
    assert "--force" in err["message"]
    await node.call("POST", "/swarm/leave", force="1")
    assert node.plane.closed and not node.runtime.alive()
    err = await node.call("GET", "/services", expect=503)
    assert "not a swarm manager" in err["message"]


async def test_health_checks_gate_the_mesh_and_replace_unhealthy_tasks(node: Node) -> None:
    spec = web_spec(replicas=1)
    spec["TaskTemplate"]["ContainerSpec"]["HealthCheck"] = {
        "Test": ["CMD-SHELL", "true"],
        "Interval": 20_000_000,
        "Retries": 2,
    }
    node.health["default"] = False  # checks fail until said otherwise
    sid = (await node.call("POST", "/services/create", spec, expect=201))["ID"]

    async def failed_unhealthy() -> list[str]:
        return [
            t["ID"]
            for t in await node.tasks(sid)
            if t["Status"].get("Err") == "task: unhealthy container"
        ]

    # never healthy: the task never gets traffic, fails, and is replaced
    first = (await eventually(failed_unhealthy))[0]
    assert all(first not in {e.task_id for e in st.endpoints} for st in node.plane.states)
    node.health["default"] = True
    task = (await running(node, sid, 1))[0]
    assert task["ID"] != first
    await eventually(lambda: ready_tasks(node.plane) == {task["ID"]})
    # healthy, then unhealthy: out of the mesh, failed, replaced
    node.health[task["ID"]] = False
    await eventually(lambda: task["ID"] not in ready_tasks(node.plane))

    async def replaced() -> bool:
        now = await running(node, sid, 1)
        return now[0]["ID"] not in (task["ID"], first)

    await eventually(replaced)
    assert task["ID"] in await failed_unhealthy()


async def test_rolling_update_waits_the_delay_between_batches_and_monitors_to_complete(
    node: Node,
) -> None:
    spec = web_spec(2)
    spec["UpdateConfig"] = {"Parallelism": 1, "Delay": 600_000_000, "Monitor": 800_000_000}
    sid = (await node.call("POST", "/services/create", spec, expect=201))["ID"]
    old = {t["ID"] for t in await running(node, sid, 2)}
    svc = await node.call("GET", f"/services/{sid}")
    svc["Spec"]["TaskTemplate"]["ForceUpdate"] = 1
    await node.call(
        "POST", f"/services/{sid}/update", svc["Spec"], version=str(svc["Version"]["Index"])
    )

    async def new_running() -> list[dict[str, Any]]:
        return [
            t for t in await node.tasks(sid)
            if t["ID"] not in old and t["Status"]["State"] == "running"
        ]

    first = (await eventually(new_running))[0]
    async def two_new() -> list[dict[str, Any]] | None:
        tasks = sorted(await new_running(), key=lambda t: t["CreatedAt"])
        return tasks if len(tasks) == 2 else None

    second = (await eventually(two_new))[1]
    gap = to_epoch(second["CreatedAt"]) - to_epoch(first["Status"]["Timestamp"])
    assert gap >= 0.6  # the second batch waited the delay after the first ran
    status = (await node.call("GET", f"/services/{sid}"))["UpdateStatus"]
    assert status["State"] == "updating"  # not complete before the monitoring period

    async def completed() -> dict[str, Any] | None:
        svc = await node.call("GET", f"/services/{sid}")
        return svc if svc["UpdateStatus"]["State"] == "completed" else None

    done = (await eventually(completed))["UpdateStatus"]
    last_run = max(to_epoch(t["Status"]["Timestamp"]) for t in await new_running())
    assert to_epoch(done["CompletedAt"]) - last_run >= 0.8
