"""`shoal network ls|inspect|create|rm`: docker's calls, columns and flags."""

from __future__ import annotations

import json

from tests.unit.cli.fakes import FakeDaemon, Recorded, Reply, Shoal

INGRESS = {"Name": "ingress", "Id": "ingressid0123456789abcdefg", "Driver": "overlay",
           "Scope": "swarm", "Created": "2025-01-01T00:00:00Z", "Labels": {}, "Ingress": True}
FRONT = {"Name": "front", "Id": "frontid00123456789abcdefg", "Driver": "overlay",
         "Scope": "swarm", "Created": "2025-01-02T00:00:00Z", "Labels": {"team": "a"}}


def serve(daemon: FakeDaemon) -> None:
    by_ref = {n["Name"]: n for n in (INGRESS, FRONT)} | {n["Id"]: n for n in (INGRESS, FRONT)}
    daemon.overrides[("GET", "/networks")] = Reply(200, json=[INGRESS, FRONT])
    for ref, net in by_ref.items():
        def inspect(rec: Recorded, net: dict[str, object] = net) -> Reply:
            extra = {"Services": {}, "Peers": []} if rec.params.get("verbose") == "true" else {}
            return Reply(200, json={**net, **extra})

        daemon.overrides[("GET", f"/networks/{ref}")] = inspect
        daemon.overrides[("DELETE", f"/networks/{ref}")] = Reply(204)
    daemon.overrides[("GET", "/networks/nosuch")] = Reply(
        404, json={"message": "network nosuch not found"})
    daemon.overrides[("POST", "/networks/create")] = Reply(
        201, json={"Id": "newid", "Warning": ""})


def test_ls_columns_quiet_and_filters(shoal: Shoal, daemon: FakeDaemon) -> None:
    serve(daemon)
    out = shoal("network", "ls").output
    assert out.splitlines() == [
        "NETWORK ID     NAME      DRIVER    SCOPE",
        "frontid00123   front     overlay   swarm",
        "ingressid012   ingress   overlay   swarm",
    ]
    assert shoal("network", "ls", "-q", "--no-trunc").output.splitlines() == [
        FRONT["Id"], INGRESS["Id"]]
    shoal("network", "ls", "-f", "driver=overlay")
    assert json.loads(daemon.requests_to("GET", "/networks")[-1].params["filters"]) == {
        "driver": {"overlay": True}}
    assert shoal("network", "ls", "--format", "{{.Name}} {{.Labels}}").output == (
        "front team=a\ningress \n")


def test_inspect_and_verbose(shoal: Shoal, daemon: FakeDaemon) -> None:
    serve(daemon)
    plain = json.loads(shoal("network", "inspect", "ingress").output)
    assert plain == [INGRESS] and daemon.requests[-1].params == {}
    verbose = json.loads(shoal("network", "inspect", "-v", "ingress").output)
    assert verbose[0]["Services"] == {} and daemon.requests[-1].params == {"verbose": "true"}
    assert shoal("network", "inspect", "--verbose", "-f", "{{.Name}}", "front").output == (
        "front\n")
    missing = shoal("network", "inspect", "front", "nosuch")
    assert missing.exit_code == 1 and json.loads(missing.stdout)[0]["Name"] == "front"
    assert "Error response from daemon: network nosuch not found" in missing.stderr


def test_create_sends_dockers_body(shoal: Shoal, daemon: FakeDaemon) -> None:
    serve(daemon)
    out = shoal("network", "create", "--attachable", "--subnet", "10.20.0.0/24",
                "--gateway", "10.20.0.1", "--label", "team=b", "-o", "mtu=1400", "back").output
    assert out == "newid\n"
    body = daemon.requests_to("POST", "/networks/create")[0].body
    assert body == {
        "Name": "back", "Driver": "overlay", "Scope": "", "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": {},
                 "Config": [{"Subnet": "10.20.0.0/24", "Gateway": "10.20.0.1"}]},
        "Internal": False, "Attachable": True, "Ingress": False, "ConfigOnly": False,
        "ConfigFrom": None, "Options": {"mtu": "1400"}, "Labels": {"team": "b"},
    }


def test_create_refuses_bad_flags_before_sending(shoal: Shoal, daemon: FakeDaemon) -> None:
    serve(daemon)
    bad = shoal("network", "create", "--gateway", "10.20.0.1", "back")
    assert bad.exit_code == 1 and "must have a corresponding subnet" in bad.stderr
    assert daemon.requests_to("POST", "/networks/create") == []
    # docker's MapOpts take a bare key as key="" (docker 28.2 creates the network)
    shoal("network", "create", "-o", "mtu", "--ipam-opt", "x", "back")
    sent = daemon.requests_to("POST", "/networks/create")[-1].body
    assert sent["Options"] == {"mtu": ""} and sent["IPAM"]["Options"] == {"x": ""}


def test_rm_resolves_then_deletes_and_force_ignores_missing(
    shoal: Shoal, daemon: FakeDaemon
) -> None:
    serve(daemon)
    assert shoal("network", "rm", "front").output == "front\n"
    assert daemon.requests_to("DELETE", f"/networks/{FRONT['Id']}")
    missing = shoal("network", "rm", "nosuch", "front")
    assert missing.exit_code == 1 and missing.stdout == "front\n"
    assert "Error response from daemon: network nosuch not found" in missing.stderr
    assert shoal("network", "rm", "-f", "nosuch").exit_code == 0
