"""Bad input to the container, exec and volume endpoints gets Docker's errors and changes
nothing (an in-process node whose task containers are fixed views)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from shoal.httpapi.app import make_app
from shoal.httpapi.taskcontainers import CONTAINERS_KEY, ContainerView, ExecOptions
from tests.unit.httpapi.conftest import Api, make_daemon

RUNNING = "a" * 64
DONE = "b" * 64


class FixedContainers:
    def __init__(self) -> None:
        self.signals: list[tuple[str, int]] = []

    def containers(self) -> Sequence[ContainerView]:
        base = {"image": "img", "image_id": "sha256:x", "created": "2026-01-01T00:00:00Z"}
        return (
            ContainerView(id=RUNNING, name="web.1.t1", status="running", pid=1, **base),  # type: ignore[arg-type]
            ContainerView(id=DONE, name="web.1.t0", status="exited", **base),  # type: ignore[arg-type]
        )

    def exec_argv(self, container_id: str, opts: ExecOptions) -> list[str]:
        return ["true"]

    async def signal(self, container_id: str, signum: int) -> None:
        self.signals.append((container_id, signum))

    async def remove(self, container_id: str) -> None:
        raise AssertionError("nothing is removed by bad input")


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[Api, FixedContainers]]:
    daemon, runtime = make_daemon(tmp_path)
    fixed = FixedContainers()
    app = make_app(daemon)
    app[CONTAINERS_KEY] = fixed
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Api(daemon, client, runtime), fixed
    finally:
        await client.close()
        await daemon.shutdown()


async def test_list_and_lookup_errors(node: tuple[Api, FixedContainers]) -> None:
    api, _ = node
    assert [c["Id"] for c in await api.call("GET", "/containers/json")] == [RUNNING]
    for flt, message in [
        ("{", "not JSON"), ('{"colour":{"red":true}}', "invalid filter 'colour'"),
        ('{"status":{"sleepy":true}}', "invalid filter 'status=sleepy'"),
        ('{"exited":{"x":true}}', "invalid filter 'exited=x'"),
        ('{"name":{"(":true}}', "invalid filter 'name=('"),
    ]:
        err = await api.call("GET", "/containers/json", expect=400, filters=flt)
        assert message in err["message"]
    err = await api.call("GET", "/containers/nosuch/json", expect=404)
    assert err["message"] == "No such container: nosuch"
    err = await api.call("GET", "/containers/json", expect=400, limit="x")
    assert "limit" in err["message"]


async def test_logs_stats_and_signals_refuse_bad_values(node: tuple[Api, FixedContainers]) -> None:
    api, fixed = node
    err = await api.call("GET", f"/containers/{RUNNING}/logs", expect=400)
    assert "you must choose at least one stream" in err["message"]
    for key, value in [("tail", "many"), ("since", "yesterday"), ("until", "x")]:
        await api.call("GET", f"/containers/{RUNNING}/logs", expect=400, stdout="1",
                       **{key: value})
    await api.call("GET", "/containers/nosuch/stats", expect=404, stream="0")
    err = await api.call("POST", f"/containers/{RUNNING}/kill", expect=400, signal="NOPE")
    assert err["message"] == "Invalid signal: NOPE"
    err = await api.call("POST", f"/containers/{DONE}/kill", expect=409)
    assert "is not running" in err["message"]
    err = await api.call("DELETE", f"/containers/{RUNNING[:6]}", expect=409)
    assert "container is running" in err["message"]
    assert fixed.signals == []


async def test_exec_errors(node: tuple[Api, FixedContainers]) -> None:
    api, _ = node
    for body, message in [
        ({}, "No exec command specified"), ({"Cmd": []}, "No exec command specified"),
        ({"Cmd": "ls"}, "invalid Cmd"), ({"Cmd": ["ls"], "Env": [1]}, "invalid Env"),
        ({"Cmd": ["ls"], "ConsoleSize": [1]}, "invalid ConsoleSize"),
    ]:
        err = await api.call("POST", f"/containers/{RUNNING}/exec", body, expect=400)
        assert message in err["message"]
    err = await api.call("POST", f"/containers/{DONE}/exec", {"Cmd": ["ls"]}, expect=409)
    assert err["message"] == f"container {DONE} is not running"
    await api.call("POST", "/containers/nosuch/exec", {"Cmd": ["ls"]}, expect=404)
    for method, path in [("POST", "/exec/nosuch/start"), ("GET", "/exec/nosuch/json"),
                         ("POST", "/exec/nosuch/resize")]:
        err = await api.call(method, path, {} if method == "POST" else None, expect=404)
        assert err["message"] == "No such exec instance: nosuch"
    made = await api.call("POST", f"/containers/{RUNNING}/exec", {"Cmd": ["ls"]}, expect=201)
    info = await api.call("GET", f"/exec/{made['Id']}/json")
    assert info["Running"] is False and info["ExitCode"] is None
    assert info["ContainerID"] == RUNNING and info["ProcessConfig"]["entrypoint"] == "ls"
    await api.call("POST", f"/exec/{made['Id']}/resize", {}, expect=409, h="10", w="10")


async def test_volume_errors_change_nothing(node: tuple[Api, FixedContainers]) -> None:
    api, _ = node
    for body, status, message in [
        ({"Name": "v", "Driver": "nfs"}, 400, "plugin not found"),
        ({"Name": "a b"}, 400, "invalid characters for a local volume name"),
        ({"Name": "v", "Labels": ["x"]}, 400, "invalid Labels"),
    ]:
        err = await api.call("POST", "/volumes/create", body, expect=status)
        assert message in err["message"]
    assert await api.call("GET", "/volumes") == {"Volumes": [], "Warnings": []}
    err = await api.call("DELETE", "/volumes/nosuch", expect=404)
    assert err["message"] == "get nosuch: no such volume"
    await api.call("GET", "/volumes", expect=400, filters='{"size":{"1":true}}')
