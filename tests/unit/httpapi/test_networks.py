"""/networks through the API of an in-process node: what the docker CLI and SDK send."""

from __future__ import annotations

from typing import Any

from tests.polling import eventually
from tests.unit.httpapi.conftest import Api, V, filters

OVERLAY = {
    "Name": "front",
    "Driver": "overlay",
    "Scope": "",
    "IPAM": {"Driver": "default", "Options": {}, "Config": []},
    "Internal": False,
    "Attachable": False,
    "Ingress": False,
    "ConfigOnly": False,
    "ConfigFrom": None,
    "Options": {},
    "Labels": {"team": "a"},
}


def service(name: str, networks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "Name": name,
        "TaskTemplate": {"ContainerSpec": {"Image": "shoal", "Args": ["whoami"]}},
        "Mode": {"Replicated": {"Replicas": 1}},
    }
    if networks is not None:
        spec["TaskTemplate"]["Networks"] = networks
    return spec


async def test_ingress_is_listed_like_dockers(api: Api) -> None:
    listed = await api.get("/networks")
    assert [(n["Name"], n["Driver"], n["Scope"], n["Ingress"]) for n in listed] == [
        ("ingress", "overlay", "swarm", True)
    ]
    ingress = listed[0]
    assert set(ingress) >= {"Id", "Created", "IPAM", "Options", "Labels", "Containers"}
    assert "ID" not in ingress
    assert ingress["IPAM"]["Config"] == [{"Subnet": "198.19.0.0/16"}]
    same = await api.get(f"/networks/{ingress['Id']}")
    assert same == await api.get("/networks/ingress") == ingress
    assert (await api.get("/networks", filters=filters(type="builtin")))[0]["Name"] == "ingress"
    assert await api.get("/networks", filters=filters(type="custom")) == []


async def test_create_inspect_list_remove(api: Api) -> None:
    created = await api.call("POST", "/networks/create", OVERLAY, expect=201)
    assert set(created) == {"Id", "Warning"}
    net = await api.get(f"/networks/{created['Id']}", scope="swarm")
    assert net["Name"] == "front" and net["Driver"] == "overlay" and net["Scope"] == "swarm"
    assert net["Labels"] == {"team": "a"} and net["Id"] == created["Id"]
    assert (await api.get("/networks/front"))["Id"] == created["Id"]
    assert (await api.get(f"/networks/{created['Id'][:6]}"))["Id"] == created["Id"]
    by_label = await api.get("/networks", filters={"label": ["team=a"]})  # docker-py's form
    assert [n["Name"] for n in by_label] == ["front"]
    assert await api.get("/networks", filters=filters(label="team=b")) == []
    assert [n["Name"] for n in await api.get("/networks", filters=filters(name="fro"))] == ["front"]
    assert [n["Name"] for n in await api.get("/networks", filters=filters(dangling="true"))] == [
        "front"
    ]
    err = await api.call("GET", "/networks/front", expect=404, scope="local")
    assert err["message"] == "network front not found"
    await api.call("DELETE", "/networks/front", expect=204)
    assert [n["Name"] for n in await api.get("/networks")] == ["ingress"]
    err = await api.call("DELETE", "/networks/front", expect=404)
    assert err["message"] == "network front not found"


async def test_bad_networks_are_refused_and_nothing_changes(api: Api) -> None:
    bridge = {**OVERLAY, "Driver": "bridge"}
    err = await api.call("POST", "/networks/create", bridge, expect=400)
    assert "shoal only supports swarm-scoped networks with the overlay driver" in err["message"]
    err = await api.call("POST", "/networks/create", {"Name": "x"}, expect=400)
    assert 'not "bridge"' in err["message"]  # Docker's default driver
    err = await api.call("POST", "/networks/create", {**OVERLAY, "Scope": "local"}, expect=400)
    assert "swarm-scoped" in err["message"]
    for name in ("ingress", "bridge", "host"):
        err = await api.call("POST", "/networks/create", {**OVERLAY, "Name": name}, expect=400)
        assert "pre-defined network" in err["message"]
    err = await api.call("POST", "/networks/create", {**OVERLAY, "Name": "a b"}, expect=400)
    assert "invalid network name" in err["message"]
    bad_ipam = {**OVERLAY, "IPAM": {"Config": [{"Subnet": "10.1.0.0/24", "Gateway": "10.2.0.1"}]}}
    err = await api.call("POST", "/networks/create", bad_ipam, expect=400)
    assert "does not contain gateway" in err["message"]
    err = await api.call("POST", "/networks/create", {**OVERLAY, "Bogus": 1}, expect=400)
    assert "unknown field" in err["message"]
    assert [n["Name"] for n in await api.get("/networks")] == ["ingress"]
    await api.call("POST", "/networks/create", OVERLAY, expect=201)
    err = await api.call("POST", "/networks/create", OVERLAY, expect=409)
    assert "already exists" in err["message"]
    err = await api.call("DELETE", "/networks/ingress", expect=400)
    assert "routing mesh" in err["message"]


async def test_services_name_networks_and_store_ids(api: Api) -> None:
    front = (await api.call("POST", "/networks/create", OVERLAY, expect=201))["Id"]
    back = (
        await api.call(
            "POST", "/networks/create", {"Name": "back", "Driver": "overlay"}, expect=201
        )
    )["Id"]
    # the stack deploy form: targets by name, with aliases
    spec = service("web", [{"Target": "front", "Aliases": ["web"]}, {"Target": back[:8]}])
    sid = (await api.call("POST", "/services/create", spec, expect=201))["ID"]
    stored = await api.get(f"/services/{sid}")
    assert stored["Spec"]["TaskTemplate"]["Networks"] == [
        {"Target": front, "Aliases": ["web"]},
        {"Target": back},
    ]
    # in use: refused, like Docker
    err = await api.call("DELETE", "/networks/front", expect=400)
    assert f"network {front} is in use by service {sid}" in err["message"]
    assert [n["Name"] for n in await api.get("/networks", filters=filters(dangling="true"))] == []
    # posting back what GET returned changes nothing; an update by name resolves too
    spec = stored["Spec"]
    spec["TaskTemplate"]["Networks"] = [{"Target": "back"}]
    await api.call("POST", f"/services/{sid}/update", spec, version=str(stored["Version"]["Index"]))
    now = await api.get(f"/services/{sid}")
    assert now["Spec"]["TaskTemplate"]["Networks"] == [{"Target": back}]
    # the old task holds its address on front until the update shuts it down

    async def removed() -> bool:
        resp = await api.client.delete(V + "/networks/front")
        return resp.status == 204

    await eventually(removed, what="front removed once its last task is shut down")
    # unknown, ingress and duplicate attachments are refused
    err = await api.call(
        "POST", "/services/create", service("a", [{"Target": "nosuch"}]), expect=404
    )
    assert err["message"] == "network nosuch not found"
    err = await api.call(
        "POST", "/services/create", service("a", [{"Target": "ingress"}]), expect=400
    )
    assert "cannot be explicitly attached to the ingress network" in err["message"]
    twice = service("a", [{"Target": "back"}, {"Target": back}])
    err = await api.call("POST", "/services/create", twice, expect=400)
    assert "duplicate network attachment" in err["message"]
    assert [s["Spec"]["Name"] for s in await api.get("/services")] == ["web"]
    await api.call("DELETE", f"/services/{sid}")
    await api.call("DELETE", "/networks/back", expect=204)


async def test_outside_a_swarm_there_is_no_network(api: Api) -> None:
    await api.call("POST", "/swarm/leave", force="1")
    assert await api.get("/networks") == []
    await api.call("GET", "/networks/ingress", expect=404)
    err = await api.call("POST", "/networks/create", OVERLAY, expect=503)
    assert "not a swarm manager" in err["message"]
