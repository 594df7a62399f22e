"""The calls `docker stack deploy|ps|services|rm` make (reference: docker-cli-calls.md §c),
replayed against an in-process node, with their effects checked."""

from __future__ import annotations

import base64
from typing import Any

from tests.polling import eventually
from tests.unit.httpapi.conftest import Api

NS = "com.docker.stack.namespace"


def stack_filter(ns: str | None = None) -> dict[str, Any]:
    return {"label": {f"{NS}={ns}" if ns else NS: True}}


def service_spec(ns: str, name: str, networks: list[str], secret: dict[str, Any] | None) -> Any:
    container: dict[str, Any] = {
        "Image": "shoal",
        "Labels": {NS: ns},
        "Args": ["whoami", "--port", "80"],
        "Env": ["A=1"],
    }
    if secret is not None:
        container["Secrets"] = [secret]
    return {
        "Name": f"{ns}_{name}",
        "Labels": {NS: ns, "com.docker.stack.image": "shoal"},
        "TaskTemplate": {
            "ContainerSpec": container,
            "Networks": [{"Target": f"{ns}_{n}", "Aliases": [name]} for n in networks],
            "Placement": {"Constraints": ["node.role == manager"]},
            "RestartPolicy": {"Condition": "on-failure", "MaxAttempts": 3},
        },
        "Mode": {"Replicated": {}},  # `replicas` not set in the compose file
        "UpdateConfig": {"Parallelism": 1, "Order": "start-first"},
        "EndpointSpec": {"Mode": "vip"},
    }


async def deploy(api: Api, ns: str) -> None:
    info = await api.get("/info")
    assert info["Swarm"]["ControlAvailable"]
    existing = {n["Name"] for n in await api.get("/networks", filters=stack_filter(ns))}
    for net in ("front", "default"):
        if f"{ns}_{net}" not in existing:
            body = {"Name": f"{ns}_{net}", "Driver": "overlay", "Labels": {NS: ns}}
            await api.call("POST", "/networks/create", body, expect=201)
    name = f"{ns}_pw"
    data = base64.b64encode(b"hunter2").decode()
    found = await api.client.get(f"/v1.47/secrets/{name}")
    if found.status == 404:
        body = {"Name": name, "Labels": {NS: ns}, "Data": data}
        await api.call("POST", "/secrets/create", body, expect=201)
    else:
        secret = await found.json()
        body = {"Name": name, "Labels": {NS: ns}, "Data": data}
        version = str(secret["Version"]["Index"])
        await api.call("POST", f"/secrets/{secret['ID']}/update", body, version=version)
    secret_id = (await api.get("/secrets", filters={"name": {name: True}}))[0]["ID"]
    ref = {
        "File": {"Name": "pw", "UID": "0", "GID": "0", "Mode": 292},
        "SecretID": secret_id,
        "SecretName": name,
    }
    specs = {
        f"{ns}_web": service_spec(ns, "web", ["front"], ref),
        f"{ns}_api": service_spec(ns, "api", ["default"], None),
    }
    existing_services = {
        s["Spec"]["Name"]: s for s in await api.get("/services", filters=stack_filter(ns))
    }
    for name, spec in specs.items():
        if name in existing_services:
            svc = existing_services[name]
            version = str(svc["Version"]["Index"])
            await api.call("POST", f"/services/{svc['ID']}/update", spec, version=version)
        else:
            await api.call("POST", "/services/create", spec, expect=201)


async def test_deploy_ps_services_redeploy_rm(api: Api) -> None:
    await deploy(api, "shop")
    # stack ls: every service with the namespace label
    listed = await api.get("/services", filters=stack_filter())
    assert sorted(s["Spec"]["Name"] for s in listed) == ["shop_api", "shop_web"]
    # stack services: the Replicas default was stored (the CLI cannot read `{}`)
    services = await api.get("/services", filters=stack_filter("shop"), status="true")
    assert all(s["Spec"]["Mode"]["Replicated"]["Replicas"] == 1 for s in services)
    nets = {n["Name"]: n["Id"] for n in await api.get("/networks", filters=stack_filter("shop"))}
    assert set(nets) == {"shop_front", "shop_default"}
    web = next(s for s in services if s["Spec"]["Name"] == "shop_web")
    assert web["Spec"]["TaskTemplate"]["Networks"] == [
        {"Target": nets["shop_front"], "Aliases": ["web"]}
    ]

    # stack ps: the stack's tasks found by the label of their service
    async def two_running() -> list[Any] | None:
        tasks = await api.get("/tasks", filters=stack_filter("shop"))
        running = [t for t in tasks if t["Status"]["State"] == "running"]
        return tasks if len(running) == 2 else None

    tasks = await eventually(two_running)
    assert {t["ServiceID"] for t in tasks} == {s["ID"] for s in services}
    assert await api.get("/tasks", filters=stack_filter("other")) == []

    # a second deploy updates in place: same IDs, no new task (nothing changed)
    await deploy(api, "shop")
    again = await api.get("/services", filters=stack_filter("shop"))
    assert {s["ID"] for s in again} == {s["ID"] for s in services}
    assert {t["ID"] for t in await api.get("/tasks", filters=stack_filter("shop"))} == {
        t["ID"] for t in tasks
    }

    # stack rm: services, secrets, configs, networks, in that order
    for svc in again:
        await api.call("DELETE", f"/services/{svc['ID']}")
    for secret in await api.get("/secrets", filters=stack_filter("shop")):
        await api.call("DELETE", f"/secrets/{secret['ID']}", expect=204)
    assert await api.get("/configs", filters=stack_filter("shop")) == []
    for net in await api.get("/networks", filters=stack_filter("shop")):
        await api.call("DELETE", f"/networks/{net['Id']}", expect=204)
    assert await api.get("/services") == []
    assert await api.get("/secrets") == []
    assert [n["Name"] for n in await api.get("/networks")] == ["ingress"]
    await eventually(lambda: not api.runtime.alive())

    async def no_task() -> bool:
        return not await api.get("/tasks")

    await eventually(no_task)
