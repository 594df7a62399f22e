"""The docker SDK (docker-py) drives shoal (issue 6): from the test process, over the unix
socket of a 1-node lab's h1, with its effects checked from the lab's client, the tasks'
processes and the daemon's state.

The tests of this module share one lab (`lab1`) and run in order: the first leaves the
lab's swarm and initialises a new one with the SDK, the others build on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from docker.models.services import Service
from docker.types import (
    ConfigReference,
    EndpointSpec,
    RestartPolicy,
    SecretReference,
    ServiceMode,
    UpdateConfig,
)

from shoal.lab import Lab
from shoal.lab.ask import probe
from shoal.lab.fabric import task_netns_of
from tests.integration.labtools import until

pytestmark = pytest.mark.lab

H1 = "198.18.0.11"
POOL = "198.19.0.0/16"


def answered_by(lab: Lab, port: int, count: int) -> set[str]:
    results = probe(lab, "http", [f"{H1}:{port}"], count=count, timeout=2.0)
    assert all(r["ok"] for r in results), [r for r in results if not r["ok"]]
    return {
        line.split(": ", 1)[1]
        for r in results
        for line in r["body"].splitlines()
        if line.startswith("task:")
    }


def running(service: Service) -> list[dict[str, Any]]:
    return [
        t
        for t in service.tasks(filters={"desired-state": "running"})
        if t["Status"]["State"] == "running"
    ]


def update_state(service: Service) -> str:
    service.reload()
    return str((service.attrs.get("UpdateStatus") or {}).get("State", ""))


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().partition("=")[::2] for item in raw if item)


@pytest.fixture(scope="module")
def client(lab1: Lab) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=f"unix://{lab1.layout.socket('h1')}", timeout=60)
    try:
        yield c
    finally:
        c.close()


def test_from_env_and_version_negotiation(
    lab1: Lab, client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{lab1.layout.socket('h1')}")
    with closing(docker.from_env()) as env_client:
        assert env_client.version()["ApiVersion"] == "1.47"
        assert env_client.ping() is True
    assert client.api.api_version == "1.47"  # "auto": what /version answered
    sock = f"unix://{lab1.layout.socket('h1')}"
    for version in ("1.24", "1.30", "1.41"):
        with closing(docker.DockerClient(base_url=sock, version=version)) as old:
            assert old.info()["Swarm"]["LocalNodeState"] == "active"
    with (
        closing(docker.DockerClient(base_url=sock, version="1.99")) as new,
        pytest.raises(docker.errors.APIError, match=r"client version 1\.99 is too new"),
    ):
        new.info()
    with pytest.raises(docker.errors.NotFound, match="shoal does not support this endpoint"):
        client.plugins.list()


def test_swarm_leave_init_attrs(client: docker.DockerClient) -> None:
    assert client.swarm.leave(force=True) is True
    assert client.info()["Swarm"]["LocalNodeState"] == "inactive"
    with pytest.raises(docker.errors.APIError, match="not a swarm manager"):
        client.services.list()
    node_id = client.swarm.init(
        advertise_addr=H1, default_addr_pool=[POOL], subnet_size=24, task_history_retention_limit=4
    )
    assert client.info()["Swarm"]["NodeID"] == node_id
    client.swarm.reload()
    attrs = client.swarm.attrs
    assert attrs["JoinTokens"]["Worker"].startswith("SWMTKN-1-")
    assert attrs["Spec"]["Orchestration"]["TaskHistoryRetentionLimit"] == 4
    assert attrs["DefaultAddrPool"] == [POOL]
    with pytest.raises(docker.errors.APIError, match="already part of a swarm"):
        client.swarm.init(advertise_addr=H1)
    client.swarm.update(task_history_retention_limit=3)
    client.swarm.reload()
    assert client.swarm.attrs["Spec"]["Orchestration"]["TaskHistoryRetentionLimit"] == 3


def test_nodes(client: docker.DockerClient) -> None:
    nodes = client.nodes.list()
    assert len(nodes) == 1
    node = nodes[0]
    assert node.attrs["Status"]["State"] == "ready" and node.attrs["ManagerStatus"]["Leader"]
    assert client.nodes.list(filters={"role": "manager"})[0].id == node.id
    assert client.nodes.list(filters={"role": "worker"}) == []
    spec = node.attrs["Spec"]
    assert node.update({**spec, "Labels": {"zone": "a"}}) is True
    node.reload()
    assert node.attrs["Spec"]["Labels"] == {"zone": "a"}
    assert (
        client.nodes.get(node.id).attrs["Description"]["Hostname"]
        == node.attrs["Description"]["Hostname"]
    )


def test_service_create_list_get_tasks(lab1: Lab, client: docker.DockerClient) -> None:
    service = client.services.create(
        "shoal",
        args=["whoami", "--port", "80"],  # `command` would replace the image's program
        name="web",
        mode=ServiceMode("replicated", replicas=3),
        endpoint_spec=EndpointSpec(ports={8080: 80}),
        env=["GREETING=hello"],
        restart_policy=RestartPolicy(condition="any", delay=1_000_000_000),
        update_config=UpdateConfig(parallelism=1, monitor=1_000_000_000),
        constraints=["node.role==manager"],
        labels={"app": "web"},
    )
    assert [s.id for s in client.services.list()] == [service.id]
    assert [s.name for s in client.services.list(filters={"label": "app=web"})] == ["web"]
    got = client.services.get("web")
    assert got.id == service.id
    assert got.attrs["Spec"]["Mode"] == {"Replicated": {"Replicas": 3}}
    assert got.attrs["Endpoint"]["Ports"][0]["PublishedPort"] == 8080
    tasks = until(lambda: len(running(service)) == 3 and running(service), what="3 tasks")
    assert sorted(t["Slot"] for t in tasks) == [1, 2, 3]
    for task in tasks:
        assert environ(task["Status"]["ContainerStatus"]["PID"])["GREETING"] == "hello"
    assert answered_by(lab1, 8080, 9) == {"web.1", "web.2", "web.3"}


def test_service_update_scale_logs(lab1: Lab, client: docker.DockerClient) -> None:
    service = client.services.get("web")
    before = {t["ID"] for t in running(service)}
    # a changed environment replaces every task
    service.update(env=["GREETING=hi"])
    service.reload()
    assert service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"] == ["GREETING=hi"]

    def replaced() -> list[dict[str, Any]] | None:
        now = running(service)
        fresh = [t for t in now if t["ID"] not in before]
        return now if len(now) == 3 and len(fresh) == 3 else None

    for task in until(replaced, what="3 tasks with the new environment"):
        assert environ(task["Status"]["ContainerStatus"]["PID"])["GREETING"] == "hi"

    # the update's last write (its status) bumps the version: scale from the final one
    until(lambda: update_state(service) == "completed", what="the update completed")
    assert service.scale(2) == {"Warnings": None}
    until(lambda: len(running(service)) == 2, what="scaled to 2")
    assert answered_by(lab1, 8080, 6) == {"web.1", "web.2"}
    service.reload()
    assert service.attrs["Spec"]["Mode"]["Replicated"]["Replicas"] == 2

    lines = b"".join(service.logs(stdout=True, stderr=True, timestamps=True)).decode()
    assert "whoami: listening on 0.0.0.0 tcp/80" in lines
    details = b"".join(service.logs(stdout=True, details=True)).decode()
    assert "com.docker.swarm.service.id=" + service.id in details


def test_networks_secrets_configs(client: docker.DockerClient) -> None:
    net = client.networks.create("front", driver="overlay", labels={"team": "a"})
    assert net.attrs["Scope"] == "swarm" and net.attrs["Driver"] == "overlay"
    assert sorted(n.name for n in client.networks.list()) == ["front", "ingress"]
    assert [n.id for n in client.networks.list(filters={"label": "team=a"})] == [net.id]
    with pytest.raises(docker.errors.APIError, match="overlay driver"):
        client.networks.create("local")  # bridge, the default
    secret = client.secrets.create(name="pw", data=b"hunter2", labels={"x": "y"})
    assert client.secrets.get("pw").attrs["Spec"] == {"Name": "pw", "Labels": {"x": "y"}}
    assert [s.id for s in client.secrets.list(filters={"name": "pw"})] == [secret.id]
    config = client.configs.create(name="cfg", data=b"k: v\n")
    assert client.configs.get(config.id).attrs["Spec"]["Data"] == "azogdgo="

    api = client.services.create(
        "shoal",
        args=["whoami", "--port", "81"],
        name="api",
        networks=["front"],
        secrets=[SecretReference(secret.id, "pw")],
        configs=[ConfigReference(config.id, "cfg", "/etc/cfg.yml")],
    )
    template = api.attrs["Spec"]["TaskTemplate"]
    assert template["Networks"] == [{"Target": net.id}]
    assert template["ContainerSpec"]["Configs"][0]["File"]["Name"] == "/etc/cfg.yml"
    with pytest.raises(docker.errors.APIError, match="is in use by service"):
        net.remove()
    with pytest.raises(docker.errors.APIError, match="in use by the following service: api"):
        secret.remove()
    api.remove()
    net.remove()
    secret.remove()
    config.remove()
    assert [n.name for n in client.networks.list()] == ["ingress"]
    assert client.secrets.list() == [] and client.configs.list() == []


def test_service_remove_leaves_nothing(lab1: Lab, client: docker.DockerClient) -> None:
    service = client.services.get("web")
    assert service.remove() is True
    with pytest.raises(docker.errors.NotFound):
        client.services.get("web")
    until(lambda: client.api.tasks() == [], what="every task removed")
    until(
        lambda: not any(r["ok"] for r in probe(lab1, "http", [f"{H1}:8080"], count=2)),
        what="8080 closed",
    )
    assert task_netns_of(lab1.layout, "h1") == []
