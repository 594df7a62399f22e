"""The mesh's service labels through the API: bad values and health-port clashes are
refused at create and update with a 400 and change nothing."""

from __future__ import annotations

from typing import Any

from tests.unit.httpapi.conftest import Api

LOCAL = {"shoal.mesh.traffic-policy": "local", "shoal.mesh.health-port": "10256"}


def spec(name: str, labels: dict[str, str], *published: int) -> dict[str, Any]:
    return {
        "Name": name,
        "Labels": labels,
        "TaskTemplate": {"ContainerSpec": {"Image": "shoal", "Args": ["whoami"]}},
        "Mode": {"Replicated": {"Replicas": 0}},
        "EndpointSpec": {"Ports": [{"TargetPort": 80, "PublishedPort": p} for p in published]},
    }


async def test_bad_labels_are_refused_at_create_and_update(api: Api) -> None:
    assert api.daemon.network is not None
    api.daemon.network.health.host = "127.0.0.1"  # a unit test listens on loopback only
    refused = await api.call(
        "POST", "/services/create", spec("web", {"shoal.mesh.traffic-policy": "nearest"}, 8080),
        expect=400,
    )
    assert 'shoal.mesh.traffic-policy: invalid value "nearest"' in refused["message"]
    assert await api.get("/services") == []

    created = await api.call("POST", "/services/create", spec("web", LOCAL, 8080), expect=201)
    before = await api.get(f"/services/{created['ID']}")
    version = before["Version"]["Index"]
    for labels, message in [
        ({**LOCAL, "shoal.mesh.health-port": "8080"},
         "port 8080 is also a published port of this service"),
        ({"shoal.mesh.health-port": "10256"}, "needs shoal.mesh.traffic-policy=local"),
    ]:
        answer = await api.call("POST", f"/services/{created['ID']}/update",
                                spec("web", labels, 8080), expect=400, version=str(version))
        assert message in answer["message"]
    assert await api.get(f"/services/{created['ID']}") == before


async def test_health_port_clashes_with_other_services_are_refused(api: Api) -> None:
    assert api.daemon.network is not None
    api.daemon.network.health.host = "127.0.0.1"
    await api.call("POST", "/services/create", spec("web", LOCAL, 8080), expect=201)
    clash = await api.call("POST", "/services/create", spec("db", {}, 10256), expect=400)
    assert "published port 10256/tcp is already the health port of service web" in (
        clash["message"])
    twin = await api.call("POST", "/services/create", spec("api", LOCAL, 9090), expect=400)
    assert "port 10256 is already the health port of service web" in twin["message"]
    taken = await api.call(
        "POST", "/services/create",
        spec("api", {**LOCAL, "shoal.mesh.health-port": "8080"}, 9090), expect=400,
    )
    assert "port 8080 is already published by service web" in taken["message"]
    assert [s["Spec"]["Name"] for s in await api.get("/services")] == ["web"]
