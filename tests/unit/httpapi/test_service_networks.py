"""Overlay network IPAM through the API: subnets, VIPs per network, task addresses."""

from __future__ import annotations

import ipaddress
from typing import Any

from tests.polling import eventually
from tests.unit.httpapi.conftest import Api
from tests.unit.httpapi.test_networks import service


async def create_network(api: Api, name: str, **extra: Any) -> str:
    body = {"Name": name, "Driver": "overlay", **extra}
    return str((await api.call("POST", "/networks/create", body, expect=201))["Id"])


def vips(svc: dict[str, Any]) -> dict[str, str]:
    return {v["NetworkID"]: v["Addr"] for v in svc["Endpoint"].get("VirtualIPs") or []}


async def test_networks_get_a_default_or_the_given_subnet(api: Api) -> None:
    await create_network(api, "a")
    await create_network(
        api, "b", IPAM={"Config": [{"Subnet": "198.18.40.0/24", "Gateway": "198.18.40.254"}]}
    )
    await create_network(api, "c")
    configs = {n: (await api.get(f"/networks/{n}"))["IPAM"]["Config"] for n in "abc"}
    assert configs == {
        "a": [{"Subnet": "198.18.1.0/24", "Gateway": "198.18.1.1"}],
        "b": [{"Subnet": "198.18.40.0/24", "Gateway": "198.18.40.254"}],
        "c": [{"Subnet": "198.18.2.0/24", "Gateway": "198.18.2.1"}],
    }


async def test_bad_subnets_are_refused_and_create_nothing(api: Api) -> None:
    await create_network(api, "a", IPAM={"Config": [{"Subnet": "198.18.40.0/24"}]})
    cases = {
        "198.18.40.128/25": "Pool overlaps with other one on this address space",
        "198.19.4.0/24": "overlaps 198.19.0.0/16",
        "198.18.50.0/30": "too small",
        "198.18.50.1/24": "it should be 198.18.50.0/24",
        "not-a-subnet": "invalid subnet",
    }
    for subnet, message in cases.items():
        body = {"Name": "x", "Driver": "overlay", "IPAM": {"Config": [{"Subnet": subnet}]}}
        err = await api.call("POST", "/networks/create", body, expect=400)
        assert message in err["message"], subnet
    body = {"Name": "x", "Driver": "overlay", "Options": {"encrypted": ""}}
    err = await api.call("POST", "/networks/create", body, expect=400)
    assert "--opt encrypted" in err["message"]
    assert [n["Name"] for n in await api.get("/networks")] == ["a", "ingress"]


async def test_a_service_gets_one_vip_per_network_kept_across_updates(api: Api) -> None:
    a = await create_network(api, "a")
    b = await create_network(api, "b")
    sid = (await api.call("POST", "/services/create", service("web", [{"Target": "a"}]),
                          expect=201))["ID"]
    svc = await api.get(f"/services/{sid}")
    assert vips(svc) == {a: "198.18.1.2/24"}
    spec = svc["Spec"]
    spec["TaskTemplate"]["Networks"] = [{"Target": a}, {"Target": "b"}]
    spec["TaskTemplate"]["ContainerSpec"]["Env"] = ["X=1"]
    await api.call("POST", f"/services/{sid}/update", spec, version=str(svc["Version"]["Index"]))
    svc = await api.get(f"/services/{sid}")
    assert vips(svc) == {a: "198.18.1.2/24", b: "198.18.2.2/24"}
    # a second service takes the next free address; dnsrr services get no VIP
    other = service("api", [{"Target": "a"}])
    oid = (await api.call("POST", "/services/create", other, expect=201))["ID"]
    assert vips(await api.get(f"/services/{oid}"))[a] not in {"198.18.1.2/24"}
    rr = service("rr", [{"Target": "a"}])
    rr["EndpointSpec"] = {"Mode": "dnsrr"}
    rid = (await api.call("POST", "/services/create", rr, expect=201))["ID"]
    assert vips(await api.get(f"/services/{rid}")) == {}
    # removing a service releases its VIP: a new one may reuse it
    await api.call("DELETE", f"/services/{sid}")
    again = (await api.call("POST", "/services/create", service("new", [{"Target": "b"}]),
                            expect=201))["ID"]
    assert vips(await api.get(f"/services/{again}")) == {b: "198.18.2.2/24"}


async def test_each_task_gets_an_address_on_each_network(api: Api) -> None:
    a = await create_network(api, "a")
    spec = service("web", [{"Target": "a", "Aliases": ["front"]}])
    spec["Mode"] = {"Replicated": {"Replicas": 3}}
    sid = (await api.call("POST", "/services/create", spec, expect=201))["ID"]

    async def attached() -> list[dict[str, Any]]:
        tasks = await api.get("/tasks")
        live = [t for t in tasks if t["ServiceID"] == sid and t.get("NetworksAttachments")]
        return live if len(live) == 3 else []

    tasks = await eventually(attached, what="3 tasks with network attachments")
    vip = ipaddress.IPv4Interface(vips(await api.get(f"/services/{sid}"))[a])
    addresses = []
    for task in tasks:
        [attachment] = task["NetworksAttachments"]
        assert attachment["Network"]["ID"] == a
        assert attachment["Network"]["Spec"]["Name"] == "a"
        assert attachment["Aliases"] == ["front"]
        addresses += attachment["Addresses"]
    hosts = {ipaddress.IPv4Interface(x) for x in addresses}
    assert len(hosts) == 3 and vip not in hosts
    assert all(h.network == ipaddress.IPv4Network("198.18.1.0/24") for h in hosts)
    verbose = await api.get("/networks/a", verbose="true")
    web = verbose["Services"]["web"]
    assert web["VIP"] == str(vip.ip)
    assert sorted(t["EndpointIP"] for t in web["Tasks"]) == sorted(str(h.ip) for h in hosts)
    assert all(t["Name"].startswith("web.") for t in web["Tasks"])
    err = await api.call("DELETE", "/networks/a", expect=400)
    assert "is in use by service" in err["message"]


async def test_aliases_must_be_dns_names_and_not_clash_on_a_network(api: Api) -> None:
    await create_network(api, "a")
    await create_network(api, "b")
    await api.call("POST", "/services/create", service("web", [{"Target": "a", "Aliases": ["w"]}]),
                   expect=201)
    for name, attachment in (
        ("x", {"Target": "a", "Aliases": ["web"]}),  # another service's name
        ("x", {"Target": "a", "Aliases": ["WEB"]}),  # case-insensitively
        ("w", {"Target": "a"}),  # a service named like another's alias
        ("x", {"Target": "a", "Aliases": ["bad name!"]}),
    ):
        err = await api.call("POST", "/services/create", service(name, [attachment]),
                             expect=400)
        assert "already used by service 'web'" in err["message"] or "not a DNS name" in (
            err["message"]
        ), attachment
    # on another network the same names are fine; services may share an alias
    await api.call("POST", "/services/create", service("x", [{"Target": "b", "Aliases": ["web"]}]),
                   expect=201)
    await api.call("POST", "/services/create", service("y", [{"Target": "a", "Aliases": ["w"]}]),
                   expect=201)
    assert sorted(s["Spec"]["Name"] for s in await api.get("/services")) == ["web", "x", "y"]


async def test_inspect_lists_this_nodes_tasks_with_their_addresses(api: Api) -> None:
    await create_network(api, "a")
    spec = service("web", [{"Target": "a"}])
    spec["Mode"] = {"Replicated": {"Replicas": 2}}
    sid = (await api.call("POST", "/services/create", spec, expect=201))["ID"]

    async def listed() -> dict[str, Any]:
        found: dict[str, Any] = (await api.get("/networks/a"))["Containers"]
        return found if len(found) == 2 else {}

    containers = await eventually(listed, what="2 containers on network a")
    tasks = {t["ID"]: t for t in await api.get("/tasks") if t["ServiceID"] == sid}
    assert set(containers) <= set(tasks)
    for task_id, c in containers.items():
        assert c["IPv4Address"] == tasks[task_id]["NetworksAttachments"][0]["Addresses"][0]
        assert c["Name"] == f"web.{tasks[task_id]['Slot']}.{task_id}"
    assert (await api.get("/networks/ingress"))["Containers"] == {}


async def test_a_gateway_outside_its_subnet_or_a_missing_network_is_refused(api: Api) -> None:
    body = {"Name": "g", "Driver": "overlay",
            "IPAM": {"Config": [{"Subnet": "198.18.60.0/24", "Gateway": "198.18.61.1"}]}}
    err = await api.call("POST", "/networks/create", body, expect=400)
    assert "does not contain gateway 198.18.61.1" in err["message"]
    err = await api.call("POST", "/services/create", service("web", [{"Target": "nope"}]),
                         expect=404)
    assert "network nope not found" in err["message"]
    assert await api.get("/services") == []
    assert [n["Name"] for n in await api.get("/networks")] == ["ingress"]
