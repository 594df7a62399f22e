"""Secrets, configs and registry credentials reach only the nodes of their tasks, in memory,
and are forgotten when those tasks end (a manager and two workers in one process)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shoal.agent.secrets import AssignedSecrets
from shoal.errors import NotFound
from tests.polling import eventually
from tests.unit.cluster.nodes import TestNode, V, manager_and_workers

AUTH = base64.urlsafe_b64encode(
    json.dumps({"username": "u", "password": "p", "serveraddress": "198.18.0.3:5000"}).encode()
).decode()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[list[TestNode]]:
    async with manager_and_workers(tmp_path) as nodes:
        yield nodes


def held(node: TestNode) -> AssignedSecrets:
    assert node.daemon.agent is not None
    secrets = node.daemon.agent.session.secrets  # type: ignore[attr-defined]
    assert isinstance(secrets, AssignedSecrets)
    return secrets


def spec(secret: str, config: str) -> dict[str, Any]:
    file = {"UID": "0", "GID": "0", "Mode": 0o400}
    return {
        "Name": "db",
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": "shoal", "Args": ["whoami", "--port", "80"],
                "Secrets": [{"SecretID": secret, "SecretName": "pw",
                             "File": {"Name": "pw", **file}}],
                "Configs": [{"ConfigID": config, "ConfigName": "conf",
                             "File": {"Name": "/etc/conf", **file}}],
            },
            "Placement": {"Constraints": ["node.hostname==w1"]},
        },
        "Mode": {"Replicated": {"Replicas": 1}},
    }  # fmt: skip


async def test_only_the_assigned_node_gets_them_and_forgets_them(
    cluster: list[TestNode],
) -> None:
    manager, w1, w2 = cluster
    pw = base64.b64encode(b"s3cret").decode()
    secret = (await manager.call("POST", "/secrets/create", {"Name": "pw", "Data": pw},
                                 expect=201))["ID"]  # fmt: skip
    conf = base64.b64encode(b"key=value\n").decode()
    config = (await manager.call("POST", "/configs/create", {"Name": "conf", "Data": conf},
                                 expect=201))["ID"]  # fmt: skip
    resp = await manager.client.post(
        V + "/services/create", json=spec(secret, config), headers={"X-Registry-Auth": AUTH}
    )
    assert resp.status == 201, await resp.text()
    sid = (await resp.json())["ID"]

    async def running() -> bool:
        tasks = await manager.tasks(sid)
        return any(t["Status"]["State"] == "running" for t in tasks)

    await eventually(running)
    await eventually(lambda: held(w1).held() == (frozenset({secret}), frozenset({config})))
    assert held(w1).get_secret(secret) == b"s3cret"
    assert held(w1).get_config(config) == b"key=value\n"
    auth = held(w1).registry_auth(sid)
    assert auth is not None and json.loads(auth)["username"] == "u"
    for other in (manager, w2):
        assert other is not w1
        assert held(other).held() == (frozenset(), frozenset())
        assert held(other).registry_auth(sid) is None
        with pytest.raises(NotFound):
            held(other).get_secret(secret)
    # the API never returns the credentials
    service = await manager.call("GET", f"/services/{sid}")
    assert "RegistryAuth" not in json.dumps(service)
    listed = await manager.call("GET", "/services")
    assert AUTH not in json.dumps(listed)

    # the task ends (service removed): the node forgets everything it was given for it
    await manager.call("DELETE", f"/services/{sid}")
    await eventually(lambda: held(w1).held() == (frozenset(), frozenset()), timeout=20)
    assert held(w1).registry_auth(sid) is None
    with pytest.raises(NotFound):
        held(w1).get_secret(secret)
    # and once nothing uses them, they can be removed
    await eventually(lambda: _removed(manager, f"/secrets/{secret}"), timeout=20)


async def _removed(manager: TestNode, path: str) -> bool:
    resp = await manager.client.delete(V + path)
    return resp.status in (200, 204)


async def test_a_bad_registry_auth_header_is_refused(cluster: list[TestNode]) -> None:
    manager = cluster[0]
    resp = await manager.client.post(
        V + "/services/create",
        json={"Name": "x", "TaskTemplate": {"ContainerSpec": {"Image": "shoal"}}},
        headers={"X-Registry-Auth": "not base64!"},
    )
    assert resp.status == 400
    assert "invalid X-Registry-Auth header" in (await resp.json())["message"]
    assert await manager.call("GET", "/services") == []


async def test_a_manager_running_the_task_holds_them_from_its_store(
    cluster: list[TestNode],
) -> None:
    manager, w1, w2 = cluster
    pw = base64.b64encode(b"hunter2").decode()
    secret = (await manager.call("POST", "/secrets/create", {"Name": "pw", "Data": pw},
                                 expect=201))["ID"]  # fmt: skip
    conf = base64.b64encode(b"c").decode()
    config = (await manager.call("POST", "/configs/create", {"Name": "conf", "Data": conf},
                                 expect=201))["ID"]  # fmt: skip
    body = spec(secret, config)
    body["TaskTemplate"]["Placement"]["Constraints"] = ["node.role==manager"]
    sid = (await manager.call("POST", "/services/create", body, expect=201))["ID"]
    await eventually(lambda: held(manager).held() == (frozenset({secret}), frozenset({config})))
    assert held(manager).get_secret(secret) == b"hunter2"
    assert held(w1).held() == held(w2).held() == (frozenset(), frozenset())
    await manager.call("DELETE", f"/services/{sid}")
    await eventually(lambda: held(manager).held() == (frozenset(), frozenset()), timeout=20)


async def test_every_node_reports_its_cpus_and_memory(cluster: list[TestNode]) -> None:
    import os

    from shoal.agent.resources import parse_meminfo

    memory = parse_meminfo(Path("/proc/meminfo").read_text())
    for node in (await cluster[0].nodes()).values():
        assert node["Description"]["Resources"] == {
            "NanoCPUs": (os.cpu_count() or 1) * 10**9, "MemoryBytes": memory
        }  # fmt: skip


def test_meminfo_is_read_in_bytes() -> None:
    from shoal.agent.resources import parse_meminfo

    assert parse_meminfo("MemFree: 5 kB\nMemTotal:       24576000 kB\n") == 24576000 * 1024
    assert parse_meminfo("nothing here\n") == 0
