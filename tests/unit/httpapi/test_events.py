"""GET /events with the real docker CLI against an in-process manager: swarm's event shapes,
--since replay from the store's ring, --until, --filter, and bad filters refused."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from shoal import timeouts
from tests.polling import eventually
from tests.unit.httpapi.conftest import Api

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI here")

SPEC = {"Name": "web", "TaskTemplate": {"ContainerSpec": {
    "Image": "busybox", "Labels": {"shoal.runtime": "exec"}}},
    "Mode": {"Replicated": {"Replicas": 1}}}


def _env(api: Api, home: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "DOCKER_CONFIG": str(home),
            "DOCKER_HOST": f"tcp://127.0.0.1:{api.client.server.port}"}


async def docker(api: Api, home: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "docker", *args, env=_env(api, home),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await timeouts.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


def lines(out: str) -> list[Any]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


async def _make_and_change(api: Api) -> str:
    created = await api.call("POST", "/services/create", SPEC, expect=201)
    svc = await api.call("GET", f"/services/{created['ID']}")
    spec = {**SPEC, "Mode": {"Replicated": {"Replicas": 3}}}
    await api.call("POST", f"/services/{created['ID']}/update", spec,
                   version=str(svc["Version"]["Index"]))
    await api.call("DELETE", f"/services/{created['ID']}")
    return str(created["ID"])


async def test_since_replays_service_create_update_remove(api: Api, tmp_path: Path) -> None:
    start = time.time()
    svc_id = await _make_and_change(api)
    code, out, err = await docker(
        api, tmp_path, "events", "--since", f"{start - 1:.3f}", "--until", f"{time.time() + 1:.3f}",
        "--filter", "type=service", "--format", "{{json .}}")
    assert code == 0, err
    got = lines(out)
    assert [(e["Type"], e["Action"]) for e in got] == [
        ("service", "create"), ("service", "update"), ("service", "remove")]
    assert all(e["Actor"]["ID"] == svc_id and e["scope"] == "swarm" for e in got)
    assert all(e["Actor"]["Attributes"]["name"] == "web" for e in got)
    assert got[1]["Actor"]["Attributes"]["replicas.old"] == "1"
    assert got[1]["Actor"]["Attributes"]["replicas.new"] == "3"
    assert got[0]["time"] >= int(start) and got[0]["timeNano"] // 10**9 == got[0]["time"]


async def test_event_and_name_filters(api: Api, tmp_path: Path) -> None:
    start = time.time()
    await _make_and_change(api)
    await api.call("POST", "/networks/create", {"Name": "backend", "Driver": "overlay"},
                   expect=201)
    span = ("--since", f"{start - 1:.3f}", "--until", f"{time.time() + 1:.3f}")
    _, out, _ = await docker(api, tmp_path, "events", *span, "--filter", "event=remove",
                             "--format", "{{json .}}")
    assert [(e["Type"], e["Action"]) for e in lines(out)] == [("service", "remove")]
    _, out, _ = await docker(api, tmp_path, "events", *span, "--filter", "network=backend",
                             "--format", "{{json .}}")
    assert [(e["Type"], e["Action"]) for e in lines(out)] == [("network", "create")]
    # no task events unless asked for; then they name their service
    _, out, _ = await docker(api, tmp_path, "events", *span, "--format", "{{.Type}}")
    assert "task" not in out.split() and "service" in out.split()
    _, out, _ = await docker(api, tmp_path, "events", *span, "--filter", "type=task",
                             "--filter", "service=web", "--format", "{{json .}}")
    tasks = lines(out)
    assert tasks and all(e["Actor"]["Attributes"]["service"] == "web" for e in tasks)
    # a container filter: no swarm event is about a container
    _, out, _ = await docker(api, tmp_path, "events", *span, "--filter", "container=x")
    assert out == ""


async def test_live_stream_sees_a_change_made_meanwhile(api: Api, tmp_path: Path) -> None:
    assert api.daemon.store is not None
    watchers = len(api.daemon.store._watchers)
    proc = await asyncio.create_subprocess_exec(
        "docker", "events", "--filter", "type=service", "--format", "{{json .}}",
        "--until", f"{time.time() + 30:.3f}", env=_env(api, tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        store = api.daemon.store  # until the CLI's request is being streamed
        await eventually(lambda: len(store._watchers) > watchers, timeout=20)
        created = await api.call("POST", "/services/create", SPEC, expect=201)
        assert proc.stdout is not None
        line = await timeouts.wait_for(proc.stdout.readline(), 10)
        event = json.loads(line)
        assert (event["Type"], event["Action"], event["Actor"]["ID"]) == (
            "service", "create", created["ID"])
    finally:
        proc.kill()
        await proc.wait()


async def test_bad_filters_and_times_are_refused(api: Api) -> None:
    resp = await api.client.get("/v1.47/events", params={"filters": '{"colour":{"red":true}}'})
    assert resp.status == 400 and (await resp.json())["message"] == "invalid filter 'colour'"
    resp = await api.client.get("/v1.47/events", params={"since": "yesterday"})
    assert resp.status == 400 and "since" in (await resp.json())["message"]


async def _shoal(api: Api, *args: str) -> tuple[int, str, str]:
    shoal = str(Path(__file__).resolve().parents[3] / ".venv" / "bin" / "shoal")
    proc = await asyncio.create_subprocess_exec(
        shoal, "-H", f"tcp://127.0.0.1:{api.client.server.port}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await timeouts.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_shoal_events_takes_docker_flags(api: Api) -> None:
    svc_id = await _make_and_change(api)
    code, out, err = await _shoal(api, "events", "--since", "1m", "--until", "0s",
                                  "--filter", "type=service", "--filter", "event=create")
    assert code == 0, err
    [line] = out.splitlines()
    assert f" service create {svc_id} (name=web)" in line
    code, out, err = await _shoal(api, "events", "--since", "1m", "--until", "0s",
                                  "--format", "{{.Actor.Attributes.name}} {{.Action}}",
                                  "--filter", "type=service")
    assert code == 0, err
    assert out.splitlines() == ["web create", "web update", "web remove"]
    code, _, err = await _shoal(api, "events", "--until", "0s", "--filter", "colour=red")
    assert code != 0 and "invalid filter 'colour'" in err
