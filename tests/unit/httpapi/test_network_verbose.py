"""`GET /networks/ingress?verbose=true` on an in-process node: Docker's `Services` and
`Peers`, from the node's endpoint table (a remote node's task arrives by gossip), and
shoal's `ShoalMesh`: what this node's data plane was given, port by port."""

from __future__ import annotations

from typing import Any

from shoal.gossip.messages import EntryBody, Record
from tests.polling import eventually
from tests.unit.httpapi.conftest import Api
from tests.unit.mesh.userspace_support import free_port


def spec(name: str, replicas: int, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "Name": name,
        "Labels": labels or {},
        "TaskTemplate": {"ContainerSpec": {"Image": "shoal", "Args": ["whoami"]}},
        "Mode": {"Replicated": {"Replicas": replicas}},
        "EndpointSpec": {"Ports": [{"TargetPort": 80, "PublishedPort": 8080},
                                   {"TargetPort": 53, "PublishedPort": 5353,
                                    "Protocol": "udp"}]},
    }


async def test_verbose_ingress_shows_services_peers_and_this_nodes_mesh(api: Api) -> None:
    plain = await api.get("/networks/ingress")
    assert "Services" not in plain and "ShoalMesh" not in plain
    sid = (await api.call("POST", "/services/create", spec("web", 2), expect=201))["ID"]
    daemon = api.daemon
    assert daemon.swarm is not None and daemon.network is not None
    me, my_addr = daemon.swarm.node_id, daemon.swarm.addr
    # a task of another node, as gossip would deliver it
    daemon.endpoints.state.merge(
        Record("node2", "remote1", 1, EntryBody(sid, "198.19.9.7", True)))

    async def settled() -> Any:
        got = await api.get("/networks/ingress", verbose="true")
        mesh = got["ShoalMesh"]
        ports = {p["PublishedPort"]: p for p in mesh["Ports"]}
        if mesh["InSync"] and 8080 in ports and len(ports[8080]["Backends"]) == 3:
            return got
        return None

    got = await eventually(settled)
    assert got["Name"] == "ingress" and got["Id"] == plain["Id"]
    web = got["Services"]["web"]
    assert web["VIP"] == "" and web["LocalLBIndex"] == 0
    assert web["Ports"] == ["Target: 80, Publish: 8080", "Target: 53, Publish: 5353"]
    tasks = {t["EndpointID"]: t for t in web["Tasks"]}
    assert len(tasks) == 3 and tasks["remote1"] == {
        "Name": "web.remote1", "EndpointID": "remote1", "EndpointIP": "198.19.9.7",
        "Info": {"Host IP": ""},  # node2 is not a peer the managers know
    }
    local = [t for t in tasks.values() if t["EndpointID"] != "remote1"]
    assert all(t["Info"] == {"Host IP": my_addr} for t in local)
    assert sorted(t["Name"].rsplit(".", 1)[0] for t in local) == ["web.1", "web.2"]
    assert all(t["Name"].endswith("." + t["EndpointID"]) for t in local)
    assert got["Peers"] == [{"Name": "h1", "IP": my_addr}]

    mesh = got["ShoalMesh"]
    assert mesh["Node"] == me and mesh["DataPlane"] == "kernel" and mesh["Problems"] == []
    tcp = next(p for p in mesh["Ports"] if p["Protocol"] == "tcp")
    assert {k: tcp[k] for k in ("PublishedPort", "TargetPort", "PublishMode", "Service",
                                "ServiceID", "TrafficPolicy", "State")} == {
        "PublishedPort": 8080, "TargetPort": 80, "PublishMode": "ingress", "Service": "web",
        "ServiceID": sid, "TrafficPolicy": "cluster", "State": "open"}
    remote = next(b for b in tcp["Backends"] if b["Task"] == "remote1")
    assert remote == {"Address": "198.19.9.7:80", "Task": "remote1", "Node": "node2",
                      "Local": False}
    assert sum(b["Local"] for b in tcp["Backends"]) == 2
    assert mesh["HealthPorts"] == []


async def test_verbose_shows_the_local_policy_and_health_ports(api: Api) -> None:
    assert api.daemon.network is not None
    api.daemon.network.health.host = "127.0.0.1"  # a unit test listens on loopback only
    labels = {"shoal.mesh.traffic-policy": "local", "shoal.mesh.health-port": "0"}
    await api.call("POST", "/services/create", spec("web", 1, labels), expect=400)
    health = free_port()
    labels["shoal.mesh.health-port"] = str(health)
    sid = (await api.call("POST", "/services/create", spec("web", 0, labels), expect=201))["ID"]
    api.daemon.endpoints.state.merge(
        Record("node2", "remote1", 1, EntryBody(sid, "198.19.9.7", True)))

    async def refused() -> Any:
        mesh = (await api.get("/networks/ingress", verbose="1"))["ShoalMesh"]
        listening = [h["Listening"] for h in mesh["HealthPorts"]]
        return mesh if mesh["InSync"] and mesh["Ports"] and listening == [True] else None

    mesh = await eventually(refused)
    # the only ready task is on another node: with the local policy this node refuses
    assert [(p["Protocol"], p["TrafficPolicy"], p["State"], p["Backends"])
            for p in mesh["Ports"]] == [("tcp", "local", "refused", []),
                                        ("udp", "local", "refused", [])]
    assert mesh["HealthPorts"] == [{"Port": health, "Service": "web", "ServiceID": sid,
                                    "Status": 503, "LocalEndpoints": 0, "Listening": True}]


async def test_verbose_on_another_network_and_unknown_ones(api: Api) -> None:
    created = await api.call("POST", "/networks/create", {"Name": "front", "Driver": "overlay"},
                             expect=201)
    got = await api.get(f"/networks/{created['Id']}", verbose="true")
    assert got["Services"] == {} and got["Peers"] == [{"Name": "h1", "IP": "198.18.0.11"}]
    assert "ShoalMesh" not in got
    await api.call("GET", "/networks/nosuch", expect=404, verbose="true")


async def test_a_workers_ingress_has_the_managers_id(api: Api) -> None:
    from shoal.httpapi.networks import _local_ingress  # what a worker (no store) answers

    managers = await api.get("/networks/ingress")
    workers = _local_ingress(api.daemon)
    assert workers is not None and workers.id == managers["Id"]
    assert workers.spec.name == "ingress" and workers.created_at == "0001-01-01T00:00:00Z"
